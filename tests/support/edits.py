"""Prompts that ask for a given text back with a small edit, which speculation drafts from the
prompt (engine/speculation.py), and free-form ones, which it mostly cannot: for its tests and
bench/speculation.py."""
FUNCTION = '''def summarize(orders):
    total = 0
    count = 0
    largest = None
    for order in orders:
        if order.cancelled:
            continue
        amount = order.quantity * order.price
        total += amount
        count += 1
        if largest is None or amount > largest:
            largest = amount
    if count == 0:
        return {"total": 0, "count": 0, "average": 0, "largest": 0}
    average = total / count
    return {
        "total": round(total, 2),
        "count": count,
        "average": round(average, 2),
        "largest": round(largest, 2),
    }'''
PARAGRAPH = ("The old harbour town wakes before dawn. Fishing boats slip out past the breakwater while the "
             "bakers light their ovens and the first buses climb the hill to the station. By eight the market "
             "square is full of stalls selling bread, cheese, flowers and the morning's catch, and the cafés "
             "set out their chairs for the tourists who arrive on the early ferry. In the afternoon the town "
             "grows quiet again, and only the gulls and the church bells break the silence until evening.")
# (worded as SmolLM2-135M copies them most closely: asked to "repeat" the paragraph, it retells it)
EDITS = [f"```python\n{FUNCTION}\n```\nRewrite this function, renaming `total` to `revenue`. Keep everything "
         "else the same.",
         f"Proofread this paragraph and return it with \"town\" changed to \"city\":\n\n\"{PARAGRAPH}\""]
FREE = ["Write a short story about a lighthouse keeper who finds a message in a bottle.",
        "Explain how a refrigerator keeps food cold.",
        "Give me ten ideas for a child's birthday party.",
        "Describe a walk through a forest in autumn.",
        "What should I pack for a week of hiking in the mountains?",
        "Write a letter to a friend about your new job."]
