"""Shared test setup."""

import torch

# One thread: the tests' models are tiny, and on a loaded 2-core machine two OpenMP threads
# spin against each other (a 2 ms MLP step took 250 ms with two threads under load).
torch.set_num_threads(1)
