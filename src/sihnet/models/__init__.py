"""The network (MONAI DenseNet-121) and its safetensors weights."""
