"""Layers with PyTorch's names, arguments, parameter names and layouts, over :mod:`minigru.functional`."""
from . import init  # noqa: F401
from .module import Module, ModuleList, Parameter, Sequential, is_grad_enabled, no_grad  # noqa: F401
