"""Trainer files written the way the upstream code bases write them (CoCoOp, MaPLe/IVLP/VPT,
PromptSRC), used to check that such files run unchanged here. Not imported by the package:
tests load them with importlib, replacing our classes of the same name in the registry."""
