"""Trainer files written the way the upstream code bases write them (CoCoOp, MaPLe/IVLP/VPT,
PromptSRC), used to check that such files run unchanged here. Not imported by the package:
tests load them with importlib, replacing our classes of the same name in the registry. The
CoCoOp and MaPLe-repo files leave out upstream's ``load_model`` override (dropping the
class-name buffers): the engine's own keeps them; ToyCoOp in test_train_helpers.py keeps one."""
