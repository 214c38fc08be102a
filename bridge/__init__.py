"""bridge: PyTorch -> ONNX -> PaddlePaddle, proven numerically."""
import os as _os
import warnings as _warnings

__version__ = "0.1.0"

# Paddle's C++ logging and its import-time ccache notice are noise on a user's terminal;
# bridge sends what matters to <out>/logs/. Users can still set GLOG_minloglevel themselves.
_os.environ.setdefault("GLOG_minloglevel", "2")
_warnings.filterwarnings("ignore", message="No ccache found")
