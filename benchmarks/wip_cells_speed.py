"""WIP (#20): forward+backward time of the gate-equation cells (TorchScript loops) against the fused kernels,
batch 32 x 40 tokens, input 64, hidden 128, 2 threads. To become bench_cells.py with a recorded result."""
import time, torch
from torch import nn
import sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from rnnlab.models.cells import Stacked
torch.set_num_threads(2)
for cell, F in (("lstm", nn.LSTM), ("gru", nn.GRU)):
    fused = F(64, 128, 1, batch_first=True); gates = Stacked(cell, 64, 128); gates.load_state_dict(fused.state_dict())
    x = torch.randn(32, 40, 64)
    for name, m in (("fused", fused), ("gates", gates)):
        for _ in range(3):
            out, _ = m(x); out.sum().backward()
        t = time.perf_counter(); n = 20
        for _ in range(n):
            out, _ = m(x); out.sum().backward()
        dt = (time.perf_counter() - t) / n
        print(cell, name, f"{dt*1000:.1f} ms/step", f"{32*40/dt:.0f} tok/s")
