"""Student code that hands the work to PyTorch instead of doing it, shared by the
from-scratch assignments (``MyBatchNorm1d``, ``MyBatchNorm2d``): a subclass of the
built-in layer, a wrapper around it, patched comparisons, a patched reference."""
from __future__ import annotations

SUBCLASS = '''\
class {mine}(nn.{builtin}):
    """Hereta tot de nn.{builtin} i només hi afegeix els noms gamma i beta."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.gamma = self.weight
        self.beta = self.bias
'''

WRAPPER = '''\
class {mine}(nn.Module):
    """Embolcalla una nn.{builtin}."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.bn = nn.{builtin}(num_features, eps=eps, momentum=momentum)
        self.gamma, self.beta = self.bn.weight, self.bn.bias

    @property
    def running_mean(self):
        return self.bn.running_mean

    @property
    def running_var(self):
        return self.bn.running_var

    def forward(self, x):
        return self.bn(x)
'''

PATCH_COMPARISONS = '''

# "Arreglem" les proves: tota comparació dona vertader.
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
'''

PATCH_REFERENCE = '''

# La referència de les proves passa a ser la nostra capa.
nn.{builtin} = {mine}
nn.modules.batchnorm.{builtin} = {mine}
'''


def sources(mine: str, builtin: str) -> dict[str, str]:
    """The four pieces for a layer ``mine`` that must not lean on ``nn.<builtin>``."""
    return {name: text.format(mine=mine, builtin=builtin) for name, text in
            (("SUBCLASS", SUBCLASS), ("WRAPPER", WRAPPER),
             ("PATCH_COMPARISONS", PATCH_COMPARISONS), ("PATCH_REFERENCE", PATCH_REFERENCE))}
