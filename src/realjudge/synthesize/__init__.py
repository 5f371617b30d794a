"""Fakes made from real photographs: pass a real photo through a generator's autoencoder.

The reconstruction keeps the photo's content, size and compression history and adds only the
decoder's upsampling trace, so a detector trained on (real, reconstruction) pairs cannot lean on
content or format (Rajan et al., ICLR 2025; DDA, NeurIPS 2025; AutoGAN, WIFS 2019 for GAN
upsampling). `decoders` defines small autoencoders with the upsampling layers generators use,
`fit` trains them on real photographs, `pairs` writes the paired data set.
"""
