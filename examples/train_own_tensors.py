"""Train a spiking network on your own tensors with the timing rule (antlr-exp as a library)."""

import torch

from antlr_exp import SpikingNetwork, decide, latency_loss, no_spike_weight_penalty

torch.manual_seed(0)
labels = torch.arange(64) % 2  # two classes
inputs = (torch.rand(64, 40, 20) < 0.01).float()  # [batch, steps, inputs] of 0/1 spikes
inputs[labels == 0, 2, :10] = inputs[labels == 1, 2, 10:] = 1  # each class: its own 10 inputs fire at step 2
net = SpikingNetwork([20, 30, 2], num_steps=40, rule="timing")  # or "activation", "antlr"
optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
for step in range(40):
    out = net(inputs)
    loss = latency_loss(out.output_spikes, out.output_times, labels, beta=1.0)
    # the timing rule gives no gradient through a neuron that never fires: the no-spike penalty
    # raises the weights of silent neurons, so training can start from a silent network
    optimizer.zero_grad()
    (loss + no_spike_weight_penalty(net, out, p=100.0)).backward()
    optimizer.step()
    print(f"step {step:2d}  loss {loss.item():.4f}  output spikes {int(out.output_spikes.sum())}")
accuracy = (decide(out.output_spikes, "earliest_spike") == labels).float().mean()
print(f"training accuracy (earliest spike decides) {accuracy:.3f}")
