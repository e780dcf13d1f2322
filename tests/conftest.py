import sys
from pathlib import Path

# The tiny model builders live beside the tests as a plain module.
sys.path.insert(0, str(Path(__file__).parent))
