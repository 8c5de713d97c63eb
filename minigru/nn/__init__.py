"""Layers with PyTorch's names, arguments, parameter names and layouts, over :mod:`minigru.functional`."""
from . import init  # noqa: F401
from .module import Module, ModuleList, Parameter, Sequential, is_grad_enabled, no_grad  # noqa: F401
from .linear import Flatten, Identity, Linear  # noqa: F401
from .activation import GELU, ReLU, Sigmoid, Softmax, Tanh  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .normalization import BatchNorm1d, BatchNorm2d  # noqa: F401
from .loss import CrossEntropyLoss  # noqa: F401
from .conv import Conv2d  # noqa: F401
from .whitening import PatchWhitening  # noqa: F401
from .pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d  # noqa: F401
from .rnn import RNN, RNNCell  # noqa: F401
from .gru import GRU, GRUCell  # noqa: F401
from .lstm import LSTM, LSTMCell  # noqa: F401
from .convgru import ConvGRU, ConvGRUCell  # noqa: F401
from .regression_loss import BCEWithLogitsLoss, MSELoss  # noqa: F401
from .renet import ReNetLayer  # noqa: F401
from .pooling import fuse_relu_maxpool  # noqa: F401
from .parallel import DataParallel  # noqa: F401
