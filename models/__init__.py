"""models: feature extractors and the fusion model as ``torch.nn.Module`` objects (see the models issue)."""
