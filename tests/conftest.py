import os
import sys
from pathlib import Path

# Tiny models run fastest on one thread, and several threads per process oversubscribe the cores
# when tests start subprocesses. Set before torch is imported so child processes inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

# The tiny model builders live beside the tests as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
