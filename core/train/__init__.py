"""Training: everything that runs in a worker, and the runner that starts it.

- `data`: small in-memory datasets (digits, shapes, zips, torchvision sets) and splits;
- `events`: the typed records a run emits, the job states, and the faults a run can end in
  (torch-free, so a server or a test can read them without importing torch);
- `loop`: the one training loop every task shares (schedule, logging, NaN and cancel checks,
  the CUDA out-of-memory retry);
- `transfer`: the lecture's transfer-learning scenarios as steps for that loop, and the LR finder;
- `advice`: the lecture's scenario table and its words;
- `results`: what a finished run leaves on disk and reading it back;
- `run`: the backend-neutral job handlers (load data, train, save);
- `jobs`: the runner interface, the local process backend and the factory;
- `pretrain`: the starter encoder, pre-trained on generated fractals.
"""
