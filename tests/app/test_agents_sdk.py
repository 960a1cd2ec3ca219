"""An OpenAI Agents SDK agent with a function tool, on its default model (the Responses API),
against a real `llamba serve` on the default model (the server of tests/app/conftest.py)."""
from agents import Agent, ModelSettings, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

from tests.support import MODEL
from tests.support.server import API_KEY


def test_an_agent_calls_its_tool_and_answers(server):
    set_tracing_disabled(True)
    cities = []

    @function_tool
    def get_weather(city: str) -> str:
        """The current weather in a city."""
        cities.append(city)
        return f"Sunny, 21 C in {city}"

    client = AsyncOpenAI(base_url=f"{server}/v1", api_key=API_KEY, max_retries=0)
    # a first turn that must call the tool; the SDK then puts tool_choice back to auto
    agent = Agent(name="weather", instructions="Answer with the tool's help.", tools=[get_weather],
                  model=OpenAIResponsesModel(model=MODEL, openai_client=client),
                  model_settings=ModelSettings(tool_choice="required", max_tokens=96, temperature=0))
    result = Runner.run_sync(agent, "What is the weather in Lyon?", max_turns=4)
    assert cities and isinstance(result.final_output, str) and result.final_output.strip()
