"""Building blocks of the labelled demo pool (``curation.demo_pool``): real photos of people shipped
by installed packages, procedural and natural backgrounds, compositing, and damaged / odd files."""
