"""The answer-cell sources of assignment 3's generated submissions (data only).

What the students of ``bncourse.classgen.a3_alexnet_bn`` write: the written answers,
correct implementations in other styles (``STYLE_A``, ``STYLE_B``, ``STYLE_C``) and the
classic mistakes as edits of the instructor's solution (``(grade_id, (old, new), ...)``).
Which student gets which, and which tests each must fail, is the table in that module
(``VARIANTS``).
"""

WRITTEN = {
    "answer_comparison": "Amb BN la xarxa arriba abans a l'exactitud de la base; el Dropout redueix la diferència "
                         "entre entrenament i validació però alenteix l'aprenentatge.",
    "answer_learning_rate": "Sense BN la taxa alta no aprèn (es queda a l'atzar); amb BN sí, perquè la normalització "
                            "fa la sortida de cada capa independent de l'escala dels pesos.",
    "answer_activations": "Sense BN l'escala canvia d'una capa a l'altra; amb BN totes queden centrades i semblants.",
    "answer_transfer": "Només s'entrenen el classificador i les BN; les BN són noves i han d'aprendre gamma i beta. "
                       "Les estadístiques de la BN es mouen en mode train() encara que estigui congelada.",
}


# -- correct implementations written differently ---------------------------------------------------------

STYLE_A = dict(
    build_features='''\
def make_features(use_bn=False, width=1.0):
    layers, in_ch = [], 3
    for out_ch, k, s, p, pool in ALEXNET_CONVS:
        out_ch = max(1, int(round(out_ch * width)))
        block = [nn.Conv2d(in_ch, out_ch, k, s, p)]
        block += [nn.BatchNorm2d(out_ch)] if use_bn else []
        block += [nn.ReLU(inplace=True)]
        block += [nn.MaxPool2d(3, 2)] if pool else []
        layers += block
        in_ch = out_ch
    return nn.Sequential(*layers)
''',
    build_classifier='''\
def make_classifier(in_features, hidden, num_classes, use_bn=False, use_dropout=False, p=0.5):
    def block(n_in):
        parts = [nn.Dropout(p=p)] if use_dropout else []
        parts.append(nn.Linear(n_in, hidden))
        if use_bn:
            parts.append(nn.BatchNorm1d(hidden))
        parts.append(nn.ReLU())
        return parts

    return nn.Sequential(*block(in_features), *block(hidden), nn.Linear(hidden, num_classes))
''',
    build_alexnet='''\
def build_alexnet(num_classes=10, use_bn=False, use_dropout=False, pretrained=False, freeze_features=False,
                  width=1.0, hidden=4096, pool=6):
    if pretrained and width != 1.0:
        raise ValueError("pretrained necessita width=1")
    last_channels = max(1, round(ALEXNET_CONVS[-1][0] * width))
    model = AlexNetBN(make_features(use_bn, width),
                      make_classifier(last_channels * pool ** 2, hidden, num_classes, use_bn, use_dropout),
                      pool=pool)
    if pretrained:
        model = load_pretrained_convs(model)
    if freeze_features:
        for layer in model.features.modules():
            if isinstance(layer, nn.Conv2d):
                layer.weight.requires_grad = False
                layer.bias.requires_grad = False
    return model
''',
    train_one_epoch='''\
def train_one_epoch(model, loader, optimizer, criterion, device=DEVICE):
    model.train()
    sum_loss = torch.zeros(())
    hits = n = 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sum_loss += loss.detach().cpu() * len(targets)
        hits += outputs.argmax(1).eq(targets).sum().item()
        n += len(targets)
    return float(sum_loss) / n, hits / n
''',
    evaluate='''\
def evaluate(model, loader, criterion, device=DEVICE):
    model.eval()
    losses, hits, n = [], 0, 0
    with torch.inference_mode():
        for inputs, targets in loader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = model(inputs)
            losses.append(criterion(outputs, targets).item() * targets.numel())
            hits += int((outputs.argmax(dim=-1) == targets).sum())
            n += targets.numel()
    return sum(losses) / n, hits / n
''',
)

STYLE_B = dict(
    build_features='''\
def make_features(use_bn=False, width=1.0):
    seq = nn.Sequential()
    channels = 3
    for spec in ALEXNET_CONVS:
        out_channels, kernel_size, stride, padding, has_pool = spec
        out_channels = max(1, round(width * out_channels))
        seq.append(nn.Conv2d(channels, out_channels, kernel_size=kernel_size, stride=stride, padding=padding))
        if use_bn:
            seq.append(nn.BatchNorm2d(num_features=out_channels))
        seq.append(nn.ReLU(inplace=True))
        if has_pool:
            seq.append(nn.MaxPool2d(kernel_size=3, stride=2))
        channels = out_channels
    return seq
''',
    build_classifier='''\
from collections import OrderedDict


def make_classifier(in_features, hidden, num_classes, use_bn=False, use_dropout=False, p=0.5):
    named = []
    sizes = [in_features, hidden]
    for i, size in enumerate(sizes, start=1):
        if use_dropout:
            named.append((f"drop{i}", nn.Dropout(p)))
        named.append((f"fc{i}", nn.Linear(size, hidden)))
        if use_bn:
            named.append((f"bn{i}", nn.BatchNorm1d(hidden)))
        named.append((f"relu{i}", nn.ReLU(inplace=True)))
    named.append(("logits", nn.Linear(hidden, num_classes)))
    return nn.Sequential(OrderedDict(named))
''',
    build_alexnet='''\
def build_alexnet(num_classes=10, use_bn=False, use_dropout=False, pretrained=False, freeze_features=False,
                  width=1.0, hidden=4096, pool=6):
    if pretrained and width != 1:
        raise ValueError("els pesos d'ImageNet són per a width=1")
    features = make_features(use_bn=use_bn, width=width)
    conv_channels = [m.out_channels for m in features.modules() if isinstance(m, nn.Conv2d)]
    classifier = make_classifier(conv_channels[-1] * pool * pool, hidden, num_classes,
                                 use_bn=use_bn, use_dropout=use_dropout)
    model = AlexNetBN(features, classifier, pool)
    if pretrained:
        load_pretrained_convs(model)

    def freeze(module):
        if isinstance(module, nn.Conv2d):
            module.requires_grad_(False)

    if freeze_features:
        model.features.apply(freeze)
    return model
''',
    train_one_epoch='''\
def train_one_epoch(model, loader, optimizer, criterion, device=DEVICE):
    model.train()
    running_loss = 0.0
    correct = torch.tensor(0)
    total = 0
    for batch_idx, (x, y) in enumerate(loader):
        x = x.to(device)
        y = y.to(device)
        model.zero_grad()
        scores = model(x)
        loss = criterion(scores, y)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * x.size(0)
        correct += (scores.argmax(1) == y).sum().cpu()
        total += x.size(0)
    return running_loss / total, correct.item() / total
''',
    evaluate='''\
@torch.no_grad()
def evaluate(model, loader, criterion, device=DEVICE):
    was_training = model.training
    model.eval()
    running_loss, correct, total = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        scores = model(x)
        running_loss += criterion(scores, y).item() * x.size(0)
        correct += (scores.argmax(1) == y).sum().item()
        total += x.size(0)
    model.train(was_training)  # deixa el model com estava
    return running_loss / total, correct / total
''',
)

STYLE_C = dict(
    # bias=False in every layer that a BatchNorm follows (the standard practice: BN cancels the bias), and the
    # accuracy computed with a second forward pass, without gradients, in both loops
    build_features='''\
def make_features(use_bn=False, width=1.0):
    layers = []
    in_channels = 3
    for out_channels, kernel, stride, padding, pool in ALEXNET_CONVS:
        out_channels = max(1, round(width * out_channels))
        layers += [nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, bias=not use_bn)]
        if use_bn:
            layers += [nn.BatchNorm2d(out_channels)]
        layers += [nn.ReLU(inplace=True)]
        if pool:
            layers += [nn.MaxPool2d(kernel_size=3, stride=2)]
        in_channels = out_channels
    return nn.Sequential(*layers)
''',
    build_classifier='''\
def make_classifier(in_features, hidden, num_classes, use_bn=False, use_dropout=False, p=0.5):
    model = nn.Sequential()
    for n_in in (in_features, hidden):
        if use_dropout:
            model.append(nn.Dropout(p))
        model.append(nn.Linear(n_in, hidden, bias=not use_bn))
        if use_bn:
            model.append(nn.BatchNorm1d(hidden))
        model.append(nn.ReLU(inplace=True))
    model.append(nn.Linear(hidden, num_classes))
    return model
''',
    build_alexnet='''\
def build_alexnet(num_classes=10, use_bn=False, use_dropout=False, pretrained=False, freeze_features=False,
                  width=1.0, hidden=4096, pool=6):
    if pretrained and width != 1:
        raise ValueError(f"width={width}: els pesos preentrenats són els d'AlexNet sencera")
    features = make_features(use_bn, width)
    out_channels = next(m.out_channels for m in reversed(features) if isinstance(m, nn.Conv2d))
    model = AlexNetBN(features, make_classifier(out_channels * pool * pool, hidden, num_classes, use_bn, use_dropout),
                      pool=pool)
    if pretrained:
        load_pretrained_convs(model)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    for conv in convs if freeze_features else []:
        for p in conv.parameters():
            p.requires_grad = False
    return model
''',
    train_one_epoch='''\
def train_one_epoch(model, loader, optimizer, criterion, device=DEVICE):
    model.train()
    loss_sum, hits, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()
        loss = criterion(model(x), y)
        loss.backward()
        optimizer.step()
        loss_sum += float(loss.detach()) * len(y)
        with torch.no_grad():  # a second forward pass, only to count the hits
            hits += int((model(x).argmax(1) == y).sum())
        count += len(y)
    return loss_sum / count, hits / count
''',
    evaluate='''\
def evaluate(model, loader, criterion, device=DEVICE):
    model.eval()
    loss_sum, hits, count = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            loss_sum += float(criterion(model(x), y)) * len(y)
            hits += int((model(x).argmax(1) == y).sum())
            count += len(y)
    return loss_sum / count, hits / count
''',
)

# -- mistakes (edits of the solution) ----------------------------------------------------------------------

BN_AFTER_RELU = ("build_features", (
    "        if use_bn:\n            layers.append(nn.BatchNorm2d(out_channels))\n"
    "        layers.append(nn.ReLU(inplace=True))\n",
    "        layers.append(nn.ReLU(inplace=True))\n"
    "        if use_bn:\n            layers.append(nn.BatchNorm2d(out_channels))\n"))
BN1D_AFTER_RELU = ("build_classifier", (
    "        if use_bn:\n            layers.append(nn.BatchNorm1d(hidden))\n"
    "        layers.append(nn.ReLU(inplace=True))\n",
    "        layers.append(nn.ReLU(inplace=True))\n"
    "        if use_bn:\n            layers.append(nn.BatchNorm1d(hidden))\n"))
BN_ON_LOGITS = ("build_classifier", (
    "    layers.append(nn.Linear(hidden, num_classes))\n",
    "    layers.append(nn.Linear(hidden, num_classes))\n"
    "    if use_bn:\n        layers.append(nn.BatchNorm1d(num_classes))\n"))
SOFTMAX_HEAD = ("build_classifier", (
    "    layers.append(nn.Linear(hidden, num_classes))\n",
    "    layers.append(nn.Linear(hidden, num_classes))\n    layers.append(nn.Softmax(dim=1))\n"))
NO_ZERO_GRAD = ("train_one_epoch", ("        optimizer.zero_grad()\n", ""))
NO_TRAIN_MODE = ("train_one_epoch", ("    model.train()\n", ""))
SOFTMAX_TRAIN = ("train_one_epoch", ("        loss = criterion(logits, y)\n",
                                     "        loss = criterion(torch.softmax(logits, dim=1), y)\n"))
SOFTMAX_EVAL = ("evaluate", ("            total_loss += criterion(logits, y).item() * y.size(0)\n",
                             "            total_loss += criterion(torch.softmax(logits, dim=1), y).item() * y.size(0)\n"))
NO_EVAL_MODE = ("evaluate", ("    model.eval()\n", ""))
NO_NO_GRAD = ("evaluate", (
    "    with torch.no_grad():\n"
    "        for x, y in loader:\n"
    "            x, y = x.to(device), y.to(device)\n"
    "            logits = model(x)\n"
    "            total_loss += criterion(logits, y).item() * y.size(0)\n"
    "            correct += (logits.argmax(dim=1) == y).sum().item()\n"
    "            seen += y.size(0)\n",
    "    for x, y in loader:\n"
    "        x, y = x.to(device), y.to(device)\n"
    "        logits = model(x)\n"
    "        total_loss += criterion(logits, y).item() * y.size(0)\n"
    "        correct += (logits.argmax(dim=1) == y).sum().item()\n"
    "        seen += y.size(0)\n"))
MEAN_OF_BATCH_MEANS = ("evaluate", (
    "            total_loss += criterion(logits, y).item() * y.size(0)\n",
    "            total_loss += criterion(logits, y).item()\n"), (
    "    return total_loss / seen, correct / seen\n",
    "    return total_loss / len(loader), correct / seen\n"))
PERCENT_ACCURACY = ("evaluate", ("    return total_loss / seen, correct / seen\n",
                                 "    return total_loss / seen, 100 * correct / seen\n"))
NOT_FROZEN = ("build_alexnet", ("    if freeze_features:\n", "    if False:  # freeze_features\n"))
FREEZE_ALL_FEATURES = ("build_alexnet", (
    "        for m in model.features:\n"
    "            if isinstance(m, nn.Conv2d):\n"
    "                for param in m.parameters():\n"
    "                    param.requires_grad_(False)\n",
    "        for param in model.features.parameters():\n"
    "            param.requires_grad_(False)\n"))
HARDCODED_IN_FEATURES = ("build_alexnet", (
    "    classifier = make_classifier(channels * pool * pool,", "    classifier = make_classifier(256 * pool * pool,"))
OWN_DOWNLOAD = ("build_alexnet", (
    "        load_pretrained_convs(model)\n",
    "        ref = torchvision.models.alexnet(weights=torchvision.models.AlexNet_Weights.IMAGENET1K_V1)\n"
    "        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]\n"
    "        for mine, theirs in zip(convs, [m for m in ref.features if isinstance(m, nn.Conv2d)]):\n"
    "            mine.load_state_dict(theirs.state_dict())\n"))
LOSS_AS_TENSOR = ("train_one_epoch", ("        total_loss += loss.item() * y.size(0)\n",
                                      "        total_loss += loss * y.size(0)\n"),
                  ("    return total_loss / seen, correct / seen\n",
                   "    return total_loss.item() / seen, correct / seen\n"))
NO_BIAS_WITHOUT_BN = ("build_features", (
    "        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=padding))\n",
    "        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=padding,\n"
    "                                bias=False))\n"))
INIT_AFTER_LOAD = ("build_alexnet", (
    "    if freeze_features:\n", "    kaiming_init(model)  # inicialitzem la xarxa\n    if freeze_features:\n"))
