"""What a trained generator is used for beyond sampling.

    latent.py    walks through the latent space: linear and spherical interpolation, sweeps, class morphs
    inpaint.py   image completion: z optimised through G's backward pass to fit the known pixels
"""
