"""Probe of assignment 3 (``train_one_epoch`` and ``evaluate``): measurements as JSON data.

Shipped as source text to the sandboxed child, where ``target`` is
``{"train_one_epoch": f, "evaluate": g}`` from the student's code; the grader
runs the same scenarios on the reference loops (``bncourse.checks.a3_alexnet_bn``).
The models are small and built here from the inputs of ``spec``; the
optimiser records the gradient it sees at every step.  The ``graphs`` scenario
counts, at every call of the criterion, how many earlier batches' loss graphs
are still alive (each graph holds a token that only it references).
"""


def _t(torch, values, dtype="float32"):
    return torch.tensor(values, dtype=getattr(torch, dtype))


def _plain(torch, value):
    if not isinstance(value, torch.Tensor):
        return {"not_a_tensor": type(value).__name__}
    return value.detach().cpu().double().tolist()


def _result(value):
    if not isinstance(value, tuple) or len(value) != 2:
        return {"shape": type(value).__name__}
    return {"loss": value[0] if isinstance(value[0], float) else {"type": type(value[0]).__name__},
            "acc": value[1] if isinstance(value[1], float) else {"type": type(value[1]).__name__}}


def _spy(torch, spec, with_bn):
    nn = torch.nn

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm1d(spec["d"]) if with_bn else None
            self.drop = nn.Dropout(0.5) if with_bn else None
            self.lin = nn.Linear(spec["d"], spec["classes"])
            self.log = []

        def forward(self, x):
            self.log.append([bool(self.training), bool(torch.is_grad_enabled())])
            if self.bn is not None:
                x = self.drop(self.bn(x))
            return self.lin(x)

    model = Spy()
    with torch.no_grad():
        model.lin.weight.copy_(_t(torch, spec["weight"]))
        model.lin.bias.copy_(_t(torch, spec["bias"]))
        if with_bn:
            model.bn.running_mean.fill_(spec["running_mean"])
            model.bn.running_var.fill_(spec["running_var"])
    return model


def _loader(torch, spec):
    data = torch.utils.data.TensorDataset(_t(torch, spec["x"]), torch.tensor(spec["y"], dtype=torch.int64))
    return torch.utils.data.DataLoader(data, batch_size=spec["batch_size"])


def train(target, torch, spec):
    model = _spy(torch, spec, with_bn=False)
    model.eval()   # train_one_epoch must switch it to training mode

    class StepSpy(torch.optim.SGD):
        def __init__(self, params, lr):
            super().__init__(params, lr=lr)
            self.seen = []

        def step(self, closure=None):
            self.seen.append([_plain(torch, p.grad) if p.grad is not None else None
                              for p in self.param_groups[0]["params"]])
            return super().step(closure)

    optimiser = StepSpy(list(model.parameters()), lr=spec["lr"])
    result = target["train_one_epoch"](model, _loader(torch, spec), optimiser, torch.nn.CrossEntropyLoss(),
                                       torch.device("cpu"))
    return {"result": _result(result), "log": model.log, "grads": optimiser.seen,
            "weight": _plain(torch, model.lin.weight), "bias": _plain(torch, model.lin.bias)}


def evaluate(target, torch, spec):
    model = _spy(torch, spec, with_bn=True)
    model.train()   # evaluate must switch it to evaluation mode
    loader, criterion = _loader(torch, spec), torch.nn.CrossEntropyLoss()
    first = target["evaluate"](model, loader, criterion, torch.device("cpu"))
    log = list(model.log)
    second = target["evaluate"](model, loader, criterion, torch.device("cpu"))
    return {"result": _result(first), "again": _result(second), "log": log,
            "running_mean": _plain(torch, model.bn.running_mean), "running_var": _plain(torch, model.bn.running_var),
            "grads": [p.grad is not None for p in model.parameters()],
            "weight": _plain(torch, model.lin.weight)}


def graphs(target, torch, spec):
    import weakref

    class Token:
        pass

    class Tagged(torch.autograd.Function):
        @staticmethod
        def forward(ctx, loss, token):
            ctx.token = token   # lives exactly as long as this batch's graph
            return loss.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad, None

    tokens, kept = [], [0]
    ce = torch.nn.CrossEntropyLoss()

    def criterion(logits, y):
        # the batch just before may still sit in the loop's variables: count the ones before it
        kept[0] = max(kept[0], sum(r() is not None for r in tokens[:-1]))
        token = Token()
        tokens.append(weakref.ref(token))
        return Tagged.apply(ce(logits, y), token)

    model = _spy(torch, spec, with_bn=False)
    optimiser = torch.optim.SGD(list(model.parameters()), lr=spec["lr"])
    target["train_one_epoch"](model, _loader(torch, spec), optimiser, criterion, torch.device("cpu"))
    return {"calls": len(tokens), "kept": kept[0], "alive_after": sum(r() is not None for r in tokens)}


SCENARIOS = {"train": train, "evaluate": evaluate, "graphs": graphs}
