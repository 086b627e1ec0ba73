"""Pure rules, each written once and called by the resolver, the doctor, ``sync``'s host check and the renderers.

``cuda``: which driver runs which CUDA build, and which SASS/PTX runs on which GPU (NVIDIA's rules).
``bnb``: which library bitsandbytes loads for a torch build (its loader eras), and whether a release fits a
torch build, Python, platform and every GPU. No I/O: values in, answers out.
"""
