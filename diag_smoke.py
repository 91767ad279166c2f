import torch
from rnnlab.tasks.seq2seq.module import attention_entropy, gradient_share
w = torch.tensor([[[0.5,0.5,0.0],[1.0,0.0,0.0]],[[1/3,1/3,1/3],[0.2,0.3,0.5]]])
print(attention_entropy(w, torch.tensor([2,3]), torch.tensor([[True,True],[True,False]])))
