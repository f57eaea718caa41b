"""The local Responses server (`slipstream serve`); runs without the GUI."""
