import os

# a stray hub or analytics call must fail fast instead of hanging on a machine without network
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
