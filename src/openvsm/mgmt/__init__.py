"""Remote management: the SSH server and the pair's shared management address."""
