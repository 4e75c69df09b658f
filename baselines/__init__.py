"""The vocoders HiFi-GAN's paper measures itself against (Table 1) and their building blocks:
one file per system (MelGAN, WaveGlow, WaveNet), each read like `models.py`. `models.py` stays the
authors' HiFi-GAN."""
