"""The answer-cell sources of assignment 5's generated submissions (data only).

What the students of ``bncourse.classgen.a5_modern_architectures`` write: the written
answers, correct implementations in other styles (``STYLE_A``, ``STYLE_B``), the classic
mistakes as edits of the instructor's solution (``(grade_id, (old, new), ...)``) or as whole
cells, delegating versions, and the cheats of the faked submissions.  Which student gets which,
and which tests each must fail, is the table in that module (``VARIANTS``, ``faked()``).
"""

WRITTEN = {
    "answer_zero_init": "Amb zero_init el canvi és 0: bn2 dona beta=0 i ReLU(x)=x perquè x surt d'una ReLU.",
    "answer_folding": "La diferència és d'arrodoniment; en eval() la BN és una funció afí fixa i es plega.",
    "answer_freeze": "Les estadístiques són buffers que la BN actualitza en train(); cal eval() que sobrevisqui.",
    "answer_layernorm": "Amb BN la sortida depèn del lot, molt més amb lots de 2; amb LN no en depèn gens.",
    "answer_finetune": "Amb lots de 2 la BN en mode entrenament queda a l'atzar; congelada i GN no depenen del lot.",
    "answer_transfer": "AlexNet+BN té més paràmetres, gairebé tots lineals; la ResNet-18 fa més operacions i transfereix millor.",
}


# -- correct implementations written differently ---------------------------------------------------------

STYLE_A = dict(
    build_block='''\
class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, zero_init_residual=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        same_shape = stride == 1 and in_channels == out_channels
        self.downsample = None if same_shape else nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels))
        if zero_init_residual:
            self.bn2.weight.data.zero_()

    def forward(self, x):
        shortcut = self.downsample(x) if self.downsample is not None else x
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        out += shortcut
        return self.relu(out)
''',
    build_resnet='''\
def make_resnet18(num_classes=1000, zero_init_residual=False):
    widths = [64, 128, 256, 512]
    stages = []
    for i, width in enumerate(widths):
        previous = widths[max(i - 1, 0)]
        first_stride = 1 if i == 0 else 2
        blocks = [BasicBlock(previous if j == 0 else width, width, first_stride if j == 0 else 1,
                             zero_init_residual) for j in range(2)]
        stages.append(nn.Sequential(*blocks))
    return ResNet(stages, num_classes=num_classes)
''',
    fold_bn='''\
def fold_bn(conv, bn):
    fused = copy.deepcopy(conv)
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight.detach()
    w = conv.weight.detach() * (gamma / std).view(-1, 1, 1, 1)
    b0 = conv.bias.detach() if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
    b = bn.bias.detach() + (b0 - bn.running_mean) * gamma / std
    fused.weight = nn.Parameter(w)
    fused.bias = nn.Parameter(b)
    return fused
''',
    fold_resnet='''\
def fold_resnet(model):
    folded = copy.deepcopy(model)
    folded.eval()

    def walk(module):
        children = list(module.named_children())
        for (n1, m1), (n2, m2) in zip(children, children[1:]):
            if isinstance(m1, nn.Conv2d) and isinstance(m2, nn.BatchNorm2d):
                setattr(module, n1, fold_bn(m1, m2))
                setattr(module, n2, nn.Identity())
        for _, child in module.named_children():
            walk(child)

    walk(folded)
    return folded
''',
    freeze_bn='''\
from torchvision.ops import FrozenBatchNorm2d


def freeze_bn(model):
    # Substituïm cada BatchNorm2d per una FrozenBatchNorm2d: les estadístiques i gamma/beta hi són buffers.
    for name, child in list(model.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(model, name, frozen)
        else:
            freeze_bn(child)
    return model
''',
)

STYLE_B = dict(
    build_block='''\
class BasicBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, zero_init_residual=False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=(3, 3), stride=(stride, stride),
                               padding=(1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(num_features=out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=(3, 3), padding=(1, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(num_features=out_channels)
        if stride == 1 and in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = nn.Sequential()
            self.downsample.append(nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False))
            self.downsample.append(nn.BatchNorm2d(out_channels))
        if zero_init_residual:
            with torch.no_grad():
                self.bn2.weight.fill_(0.0)

    def forward(self, x):
        residual = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            residual = self.downsample(x)
        out = out + residual
        out = self.relu(out)
        return out
''',
    build_resnet='''\
def make_resnet18(num_classes=1000, zero_init_residual=False):
    z = zero_init_residual
    layer1 = nn.Sequential(BasicBlock(64, 64, 1, z), BasicBlock(64, 64, 1, z))
    layer2 = nn.Sequential(BasicBlock(64, 128, 2, z), BasicBlock(128, 128, 1, z))
    layer3 = nn.Sequential(BasicBlock(128, 256, 2, z), BasicBlock(256, 256, 1, z))
    layer4 = nn.Sequential(BasicBlock(256, 512, 2, z), BasicBlock(512, 512, 1, z))
    return ResNet([layer1, layer2, layer3, layer4], num_classes)
''',
    fold_bn='''\
def fold_bn(conv, bn):
    inv_std = bn.running_var.add(bn.eps).rsqrt()
    factor = (bn.weight * inv_std).detach()
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups).to(conv.weight)
    old_bias = conv.bias.detach() if conv.bias is not None else 0.0
    fused.weight.data = conv.weight.detach().clone() * factor[:, None, None, None]
    fused.bias.data = (bn.bias.detach() - bn.running_mean * factor + old_bias * factor).clone()
    return fused
''',
    fold_resnet='''\
def fold_resnet(model):
    model = copy.deepcopy(model)
    model.eval()
    pairs = [(model, "conv1", "bn1")]
    for m in model.modules():
        if hasattr(m, "conv2") and hasattr(m, "bn2"):
            pairs += [(m, "conv1", "bn1"), (m, "conv2", "bn2")]
            if m.downsample is not None:
                pairs.append((m.downsample, "0", "1"))
    for parent, conv_name, bn_name in pairs:
        setattr(parent, conv_name, fold_bn(getattr(parent, conv_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
    return model
''',
    freeze_bn='''\
def freeze_bn(model):
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))]
    for bn in bns:
        bn.weight.requires_grad = False
        bn.bias.requires_grad = False
    plain_train = model.train

    def train(mode=True):
        plain_train(mode)
        for bn in bns:
            bn.eval()
        return model

    model.train = train
    model.train(model.training)
    return model
''',
)

# -- mistakes (edits of the solution) ----------------------------------------------------------------------

RELU_BEFORE_SUM = ("build_block", (
    "        out = self.bn2(self.conv2(out))\n        return self.relu(out + identity)\n",
    "        out = self.relu(self.bn2(self.conv2(out)))\n        return out + identity\n"))
DOWNSAMPLE_WITHOUT_BN = ("build_block", (
    "                nn.BatchNorm2d(out_channels),\n", ""))
STRIDE_ON_CONV2 = ("build_block", (
    "kernel_size=3, stride=stride, padding=1, bias=False)", "kernel_size=3, stride=1, padding=1, bias=False)"), (
    "kernel_size=3, stride=1, padding=1, bias=False)\n        self.bn2",
    "kernel_size=3, stride=stride, padding=1, bias=False)\n        self.bn2"))
ALWAYS_PROJECTED = ("build_block", ("        if stride != 1 or in_channels != out_channels:\n",
                                    "        if True:  # sempre una projecció\n"))
CONV_BIAS = ("build_block", (
    "kernel_size=3, stride=stride, padding=1, bias=False)", "kernel_size=3, stride=stride, padding=1)"), (
    "kernel_size=3, stride=1, padding=1, bias=False)", "kernel_size=3, stride=1, padding=1)"))
ZERO_INIT_BN1 = ("build_block", ("            nn.init.zeros_(self.bn2.weight)\n",
                                 "            nn.init.zeros_(self.bn1.weight)\n"))
ZERO_INIT_EVERY_BN = ("build_block", ("            nn.init.zeros_(self.bn2.weight)\n",
                                      "            for m in self.modules():\n"
                                      "                if isinstance(m, nn.BatchNorm2d):\n"
                                      "                    nn.init.zeros_(m.weight)\n"))
ZERO_INIT_IGNORED = ("build_block", ("        if zero_init_residual:\n", "        if False:  # zero_init_residual\n"))

STRIDE_ON_SECOND_BLOCK = ("build_resnet", (
    "            BasicBlock(in_channels, out_channels, stride, zero_init_residual=zero_init_residual),\n"
    "            BasicBlock(out_channels, out_channels, 1, zero_init_residual=zero_init_residual),\n",
    "            BasicBlock(in_channels, out_channels, 1, zero_init_residual=zero_init_residual),\n"
    "            BasicBlock(out_channels, out_channels, stride, zero_init_residual=zero_init_residual),\n"))
ZERO_INIT_NOT_PASSED = ("build_resnet", (
    "            BasicBlock(in_channels, out_channels, stride, zero_init_residual=zero_init_residual),\n"
    "            BasicBlock(out_channels, out_channels, 1, zero_init_residual=zero_init_residual),\n",
    "            BasicBlock(in_channels, out_channels, stride),\n"
    "            BasicBlock(out_channels, out_channels, 1),\n"))

NO_EPS = ("fold_bn", ("torch.sqrt(bn.running_var + bn.eps)", "torch.sqrt(bn.running_var)"))
EPS_OUTSIDE_SQRT = ("fold_bn", ("torch.sqrt(bn.running_var + bn.eps)", "(torch.sqrt(bn.running_var) + bn.eps)"))
VARIANCE_NOT_STD = ("fold_bn", ("torch.sqrt(bn.running_var + bn.eps)", "(bn.running_var + bn.eps)"))
IGNORE_CONV_BIAS = ("fold_bn", ("    conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)\n",
                                "    conv_bias = torch.zeros_like(bn.running_mean)\n"))
ALWAYS_FLOAT32 = ("fold_bn", ("padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)",
                              "padding_mode=conv.padding_mode)"))
LOSES_CONV_GEOMETRY = ("fold_bn", (
    "    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,\n"
    "                      padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,\n"
    "                      padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)\n",
    "    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,\n"
    "                      dtype=conv.weight.dtype)\n"))
FOLD_IN_PLACE = """\
def fold_bn(conv, bn):
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return conv
"""
DELEGATE_FUSER = """\
def fold_bn(conv, bn):
    return torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
"""
DELEGATE_FUSER_IMPORTED = """\
from torch.nn.utils.fusion import fuse_conv_bn_eval as _fuse


def fold_bn(conv, bn):
    fused = _fuse(conv.eval(), bn.eval())
    return fused
"""

FORGET_DOWNSAMPLE = ("fold_resnet", (
    "            if block.downsample is not None:\n"
    "                block.downsample = nn.Sequential(fold_bn(block.downsample[0], block.downsample[1]), nn.Identity())\n",
    ""))
FORGET_STEM = ("fold_resnet", ("    model.conv1, model.bn1 = fold_bn(model.conv1, model.bn1), nn.Identity()\n", ""))
FOLD_RESNET_IN_PLACE = ("fold_resnet", ("    model = copy.deepcopy(model).eval()\n", "    model = model.eval()\n"))
BN_KEPT_AFTER_FOLD = ("fold_resnet", (
    "            block.conv1, block.bn1 = fold_bn(block.conv1, block.bn1), nn.Identity()\n"
    "            block.conv2, block.bn2 = fold_bn(block.conv2, block.bn2), nn.Identity()\n",
    "            block.conv1 = fold_bn(block.conv1, block.bn1)\n"
    "            block.conv2 = fold_bn(block.conv2, block.bn2)\n"))

REQUIRES_GRAD_ONLY = """\
def freeze_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad = False
            m.bias.requires_grad = False
    return model
"""
EVAL_ONCE = """\
def freeze_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
    return model
"""
MOMENTUM_ZERO = """\
def freeze_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = 0.0  # les estadístiques ja no es mouen
            for p in m.parameters():
                p.requires_grad_(False)
    return model
"""
NO_RUNNING_STATS = """\
def freeze_bn(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.track_running_stats = False  # que no actualitzi les estadístiques
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
    return model
"""
EVAL_BUT_TRAINABLE = ("freeze_bn", ("            for p in m.parameters():\n                p.requires_grad_(False)\n", ""))
FREEZE_EVERYTHING = ("freeze_bn", ("    return model\n",
                                   "    for p in model.parameters():\n        p.requires_grad_(False)\n    return model\n"))

DELEGATE_BLOCK = """\
from torchvision.models.resnet import BasicBlock as _Block


class BasicBlock(_Block):
    def __init__(self, in_channels, out_channels, stride=1, zero_init_residual=False):
        shortcut = None
        if stride != 1 or in_channels != out_channels:
            shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                     nn.BatchNorm2d(out_channels))
        super().__init__(in_channels, out_channels, stride, downsample=shortcut)
        if zero_init_residual:
            nn.init.zeros_(self.bn2.weight)
"""
DELEGATE_RESNET = """\
def make_resnet18(num_classes=1000, zero_init_residual=False):
    tv = torchvision.models.resnet18(weights=None, zero_init_residual=zero_init_residual)
    return ResNet([tv.layer1, tv.layer2, tv.layer3, tv.layer4], num_classes)
"""


# -- faked submissions: the notebook's own tests made to pass in the kernel --------------------------------
# They are not part of VARIANTS (the demo's class): tests grade them beside the catalogue, and their ``fails``
# is what the work deserves, which only the trusted re-check out of the kernel can see.

# torch.allclose answers True: every comparison of the tests that goes through it "passes".
PATCH_ALLCLOSE = """\
# Les comparacions sempre surten bé.
import torch
torch.allclose = lambda *args, **kwargs: True
"""
# freeze_bn behaves as it should only inside the notebook's own test cells (their helpers are in the kernel's
# globals), and with requires_grad=False alone everywhere else.
DETECTS_TESTS = """\
def freeze_bn(model):
    if "_fine_tune" in globals():  # dins de les proves del quadern
        def stay_in_eval(module, mode=True):
            return nn.Module.train(module, False)

        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
                m.train = types.MethodType(stay_in_eval, m)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.requires_grad_(False)
            m.bias.requires_grad_(False)
    return model
"""
# An input transformer turns every test cell into `pass`.
NEUTER_TESTS = """\
def _sense_proves(lines):
    return ["pass\\n"] if lines and lines[0].startswith("# Prova:") else lines


get_ipython().input_transformers_cleanup.append(_sense_proves)
"""
