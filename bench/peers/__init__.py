"""The peers raychat is compared with (bench/compare.py): small servers written the way each
library's documentation shows. See bench/README.md, "Peers"."""
