"""The OpenAPI suite shares the server helper with the compatibility tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "helpers"))
