"""The default configuration (default.yaml), installed as package data of llamba.configs."""
