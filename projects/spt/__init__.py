"""SPT: sensitivity-aware parameter-efficient fine-tuning (SPT-LoRA / SPT-Adapter)."""
from .allocation import allocate  # noqa: F401
from .backbone import SPTViT  # noqa: F401
from .cache import SPTCacheError, load_allocation, save_allocation  # noqa: F401
from .hooks import SPTAllocationHook  # noqa: F401
from .runner import SPTRunner, ensure_allocation  # noqa: F401
from .sensitivity import accumulate_sensitivity  # noqa: F401
from .swin import SPTSwin  # noqa: F401
