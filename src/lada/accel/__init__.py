"""Speed machinery: the lean decoder, bf16 cast copies, packed linears, C kernels and their build."""
