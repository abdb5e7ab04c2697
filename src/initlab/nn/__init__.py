"""Mirrors of torch's ``torch.nn`` namespaces: ``from initlab.nn import init`` replaces ``from torch.nn import init``.

:mod:`initlab.nn.init` keeps every name, signature, default and value of :mod:`torch.nn.init`, and differs only
where torch has a known defect (each stated where it applies).
"""
