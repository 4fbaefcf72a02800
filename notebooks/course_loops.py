# Bucles d'entrenament i d'avaluació del curs.
# No editeu aquesta cel·la: la font única és notebooks/course_loops.py del repositori.
# (No s'inclou a les pràctiques on aquests bucles són un exercici.)
# Fa servir DEVICE i progress de la cel·la course_utils, que va abans.
import torch


def train_one_epoch(model, loader, optimizer, criterion, device=DEVICE):
    """Una època d'entrenament; retorna (pèrdua mitjana, exactitud) sobre les mostres vistes."""
    model.train()  # Dropout actiu i BatchNorm amb estadístiques del lot
    total_loss, correct, seen = 0.0, 0, 0
    for x, y in progress(loader, desc="entrenament", leave=False):
        x, y = x.to(device), y.to(device)
        optimizer.zero_grad()  # els gradients s'acumulen si no es posen a zero
        logits = model(x)
        loss = criterion(logits, y)  # CrossEntropyLoss vol logits, sense Softmax
        loss.backward()
        optimizer.step()
        total_loss += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
        seen += len(y)
    return total_loss / seen, correct / seen


def evaluate(model, loader, criterion, device=DEVICE):
    """Pèrdua mitjana i exactitud en mode avaluació, sense calcular gradients."""
    model.eval()  # Dropout apagat i BatchNorm amb les estadístiques acumulades
    total_loss, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in progress(loader, desc="avaluació", leave=False):
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total_loss += criterion(logits, y).item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
            seen += len(y)
    return total_loss / seen, correct / seen
