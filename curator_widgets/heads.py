"""Classifier heads on frozen embeddings: small, warm-started, class-weighted, calibrated.

Active learning refits a head every round on a few hundred labels, then scores every chip.
So the head is tiny (logistic regression or a one-hidden-layer MLP in torch), continues
from last round's weights instead of starting over, weights classes so a handful of
positives still count, and reports temperature-scaled probabilities (fitted on a held-out
split or on cross-validated predictions). With balanced weights a calibrated p answers as if
both classes were equally common; `active.shift_prior` re-expresses it for the pool's own
share of positives. Scoring walks the
embeddings (a float16 memmap is fine) in large chunks: one pass for a million chips.
"""

from __future__ import annotations

import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from .atomic import atomic_path
from .errors import CuratorError

KINDS = ("logistic", "mlp")
SMALL_FIT = 4_000_000  # stacked-heads x labels x dims below which training runs single-threaded
NEWTON_MAX = 2048  # binary logistic heads use exact Newton steps while min(labels, dims + 1) is at most this
BIAS_SCALE = 10.0  # the bias enters Newton's method as a constant feature of this value
# Above this many dims (with more labels than dims) a Newton system is solved by conjugate gradients, never formed:
# K Hessians of labels x dims^2 each cost seconds at 3,000 x 768 on 2 cores (benchmarks/heads_speed.py)
NEWTON_CG_DIM = 256
PCG_REFRESH = 10  # conjugate-gradient iterations after which the next Newton step rebuilds its preconditioner
_T_GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241)).astype(np.float32)


@runtime_checkable
class ClassifierHead(Protocol):
    """What an ActiveLoop needs of a head, so another module's head (label propagation over a kNN
    graph, an ensemble) plugs in: `ActiveLoop(ws, run, head=my_head)` or `register_head`.

    `X` is the run's whole embedding matrix (row i = chip i; a float16 memmap), so a transductive
    head can use every chip; `ids` name the rows: the labelled chips in `fit` (one class index of
    `y` per id, classes in the label set's order), the chips to score in `predict_proba` (all rows
    when None), which returns float32 [len(ids), n_classes] probabilities.
    """

    def fit(self, X: Any, y: np.ndarray, *, ids: np.ndarray) -> Any: ...

    def predict_proba(self, X: Any, ids: np.ndarray | None = None) -> np.ndarray: ...


HeadFactory = Callable[..., ClassifierHead]
_REGISTRY: dict[str, HeadFactory] = {}


def register_head(kind: str, factory: HeadFactory) -> None:
    """Make `ActiveLoop(..., head=kind)` build heads with `factory(n_classes=, seed=, device=, **head_options)`;
    the kind is stored with the loop, so a resumed loop finds it again once its module registered it."""
    if not isinstance(kind, str) or not kind or kind in KINDS:
        raise CuratorError(f"head kind {kind!r} cannot be registered (empty, not a string, or built in: {list(KINDS)})",
                           "pick a new name, e.g. register_head('propagation', make_head)")
    if not callable(factory):
        raise CuratorError(f"the factory for head kind {kind!r} is not callable",
                           "pass a function or class: factory(n_classes=..., seed=..., device=..., **options)")
    _REGISTRY[kind] = factory


def head_kinds() -> tuple[str, ...]:
    """Every head kind an ActiveLoop can build by name: the built-in ones, then the registered ones."""
    return KINDS + tuple(k for k in _REGISTRY if k not in KINDS)


def make_head(kind: str, n_classes: int, seed: int = 0, device: str | None = "auto",
              options: dict[str, Any] | None = None) -> ClassifierHead:
    """A fresh head of a built-in or registered kind."""
    opts = dict(options or {})
    if kind in KINDS:
        return Head(kind, n_classes=n_classes, device=device, seed=seed, **opts)
    if kind in _REGISTRY:
        head = _REGISTRY[kind](n_classes=n_classes, seed=seed, device=device, **opts)
        if not isinstance(head, ClassifierHead):
            raise CuratorError(f"the factory of head kind {kind!r} returned {type(head).__name__}, which has no "
                               "fit(X, y, ids=...) and predict_proba(X, ids=...)", "return a ClassifierHead")
        return head
    raise CuratorError(f"head kind {kind!r} is not one of {list(head_kinds())}",
                       "use 'logistic' or 'mlp', register the kind with register_head() first, "
                       "or pass the head object itself: ActiveLoop(..., head=my_head)")


def pick_device(device: str | None = "auto") -> str:
    """'auto' -> 'cuda' when torch sees a GPU, else 'cpu'; anything else is checked."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise CuratorError(f"device {device!r} asked for, but torch sees no CUDA GPU", "use device='auto' or 'cpu'")
    return str(device)


class Head:
    """A logistic-regression or MLP classifier over (standardized) embedding vectors.

    `fit` keeps the previous weights when called again (warm start) as long as the
    feature size and classes agree; `predict_proba` returns calibrated probabilities.
    """

    def __init__(self, kind: str = "logistic", n_classes: int = 2, hidden: int = 256, dropout: float = 0.1,
                 weight_decay: float = 1e-2, steps: int | None = None, warm_steps: int | None = None,
                 lr: float = 3e-3, class_weight: str | None = "balanced", calibrate: str | None = "auto",
                 folds: int = 3,
                 device: str | None = "auto", seed: int = 0):
        if kind not in KINDS:
            raise CuratorError(f"head kind {kind!r} is not one of {list(KINDS)}",
                               "use 'logistic' (fast, robust on few labels) or 'mlp'")
        if int(n_classes) < 2:
            raise CuratorError(f"a head needs at least 2 classes, got {n_classes}", "pass n_classes=2 for binary")
        if calibrate not in (None, "auto", "cv", "holdout"):
            raise CuratorError(f"calibrate={calibrate!r} is not None, 'auto', 'cv' or 'holdout'",
                               "use 'auto' (held-out split when given, else cross-validation)")
        if class_weight not in (None, "balanced"):
            raise CuratorError(f"class_weight={class_weight!r} is not None or 'balanced'", "use 'balanced' or None")
        self.kind, self.n_classes, self.hidden, self.dropout = kind, int(n_classes), int(hidden), float(dropout)
        # L-BFGS iterations (logistic) or AdamW steps (MLP), from scratch and when warm-started
        steps = steps if steps is not None else 200
        warm_steps = warm_steps if warm_steps is not None else 60
        self.weight_decay, self.steps, self.warm_steps, self.lr = float(weight_decay), int(steps), int(warm_steps), lr
        self.class_weight, self.calibrate, self.folds = class_weight, calibrate, int(folds)
        self.device = pick_device(device)
        self.seed = int(seed)
        self.params: dict[str, Any] | None = None  # weight tensors; logistic: W, b; mlp: W1, b1, W2, b2
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.temperature: float = 1.0
        self.rounds = 0  # how many fits this head has seen (0 = fresh)
        self.calibration: dict[str, Any] = {}
        self._factor: Any = None  # Cholesky factor of the last Hessian (the next fit's preconditioner; not saved)

    # ------------------------------------------------------------------ setup
    def config(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("kind", "n_classes", "hidden", "dropout", "weight_decay", "steps",
                                              "warm_steps", "lr", "class_weight", "calibrate", "folds", "seed")}

    def set_scaler(self, mean: np.ndarray, std: np.ndarray) -> "Head":
        """Fix the feature standardization (computed once over the pool, so warm starts stay comparable)."""
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.maximum(np.asarray(std, dtype=np.float32).reshape(-1), 1e-6)
        return self

    def _init_params(self, dim: int) -> dict[str, Any]:
        """Fresh weights: zeros for logistic regression (convex: any start works), nn.Linear's uniform
        init for the MLP."""
        import torch

        g = torch.Generator(device="cpu").manual_seed(self.seed)
        if self.kind == "logistic":
            params = {"W": torch.zeros(dim, self.n_classes), "b": torch.zeros(self.n_classes)}
        else:
            def unif(shape: tuple, fan_in: int) -> Any:
                return (torch.rand(shape, generator=g) * 2 - 1) / np.sqrt(fan_in)
            params = {"W1": unif((dim, self.hidden), dim), "b1": unif((self.hidden,), dim),
                      "W2": unif((self.hidden, self.n_classes), self.hidden),
                      "b2": unif((self.n_classes,), self.hidden)}
        return {k: v.to(self.device) for k, v in params.items()}

    def _forward(self, P: dict[str, Any], x: Any, train: bool = False) -> Any:
        """Logits of K stacked heads (every tensor in P has a leading K axis) for rows x: [K, n, C]."""
        import torch

        if self.kind == "logistic":
            return torch.einsum("nd,kdc->knc", x, P["W"]) + P["b"][:, None, :]
        h = torch.nn.functional.gelu(torch.einsum("nd,kdh->knh", x, P["W1"]) + P["b1"][:, None, :])
        if train and self.dropout > 0:
            h = torch.nn.functional.dropout(h, self.dropout, training=True)
        return torch.einsum("knh,khc->knc", h, P["W2"]) + P["b2"][:, None, :]

    @property
    def dim(self) -> int | None:
        return None if self.params is None else int(next(iter(self.params.values())).shape[0])

    # ------------------------------------------------------------------ training
    def fit(self, X: np.ndarray, y: Sequence[int] | np.ndarray, X_val: np.ndarray | None = None,
            y_val: Sequence[int] | np.ndarray | None = None, warm_start: bool = True, *,
            ids: np.ndarray | None = None) -> "Head":
        """Train on labelled vectors `X` (n x d), or on rows `ids` of X, with class indices `y`; calibrate
        on (X_val, y_val) or by CV.

        The head and its k cross-validation copies are independent problems; they are trained
        stacked, as one optimization over [k + 1] weight sets, so calibration costs one run.
        """
        import torch

        X = np.asarray(X if ids is None else X[np.asarray(ids, dtype=np.int64)])
        y = np.asarray(y, dtype=np.int64).reshape(-1)
        if X.ndim != 2 or X.shape[0] != y.shape[0]:
            raise CuratorError(f"fit needs X of shape (n, d) and n labels, got X {X.shape} and {y.shape[0]} labels",
                               "pass embeddings[labelled_ids] and one class index per row")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise CuratorError(f"class indices must be 0..{self.n_classes - 1}, got {sorted(set(y.tolist()))[:5]}",
                               "map labels to indices in the label set's order")
        present = np.unique(y)
        if present.size < 2:
            raise CuratorError(f"need labels of at least two classes to train a head, got only class(es) "
                               f"{present.tolist()} ({y.size} labels)",
                               "label a few examples of the other class "
                               "(the seed set's random chips are usually negatives)")
        if self.mean is None or self.mean.shape[0] != X.shape[1]:
            Xf = X.astype(np.float32)
            self.set_scaler(Xf.mean(0), Xf.std(0))
        if self.params is not None and (not warm_start or self.dim != X.shape[1]):
            self.params = None
        warm = self.params is not None
        init = self.params if warm else self._init_params(X.shape[1])
        xt, yt = self._tensor(X), torch.as_tensor(y, device=self.device)
        weights = self._class_weights(y)
        mode = self.calibrate
        has_val = X_val is not None and y_val is not None and len(np.unique(np.asarray(y_val))) >= 2
        if mode == "holdout" and not has_val:
            raise CuratorError("calibrate='holdout' but no held-out split with two classes was given",
                               "pass X_val/y_val, or use calibrate='auto'")
        folds = self._folds(y) if mode in ("auto", "cv") and not has_val else None
        k = 0 if folds is None else int(folds.max()) + 1
        masks = np.stack([np.ones(len(y), dtype=bool)] + [folds != f for f in range(k)])
        P = self._fit_stacked(init, xt, yt, weights, masks, self.warm_steps if warm else self.steps)
        self.params = {name: t[0].detach().clone() for name, t in P.items()}
        self.temperature, self.calibration = 1.0, {"method": None}
        if has_val and mode in ("auto", "holdout"):
            logits = self.predict_logits(np.asarray(X_val))
            self._set_temperature(logits, np.asarray(y_val, dtype=np.int64), weights, "holdout")
        elif folds is not None:
            with torch.no_grad():
                logits = self._forward({name: t[1:] for name, t in P.items()}, xt)
            oof = logits[torch.as_tensor(folds, device=self.device), torch.arange(len(y), device=self.device)]
            self._set_temperature(oof.float().cpu().numpy(), y, weights, f"cv{k}")
        elif mode is not None:
            self.calibration = {"method": None, "reason": "fewer than 2 labels in some class"}
        self.rounds += 1
        return self

    def _folds(self, y: np.ndarray) -> np.ndarray | None:
        """Stratified fold number per label, or None when a class has fewer than two labels."""
        counts = np.bincount(y, minlength=self.n_classes)
        k = int(min(self.folds, counts[counts > 0].min()))
        if k < 2:
            return None
        rng = np.random.default_rng(self.seed + self.rounds)
        fold = np.empty(len(y), dtype=np.int64)
        for c in np.unique(y):
            members = np.flatnonzero(y == c)
            fold[rng.permutation(members)] = np.arange(members.size) % k
        return fold

    def _fit_stacked(self, init: dict[str, Any], xt: Any, yt: Any, weights: Any, masks: np.ndarray,
                     steps: int) -> dict[str, Any]:
        """Train K heads (row k of `masks` = the labels head k learns from), all from `init`, on the sum of
        their class-weighted mean losses: L-BFGS for the convex logistic head, AdamW for the MLP."""
        import torch

        K, n = masks.shape
        with _torch_threads(1 if K * xt.numel() < SMALL_FIT else None):
            if self.kind == "logistic" and self.n_classes == 2 and min(n, xt.shape[1] + 1) <= NEWTON_MAX:
                return self._newton_binary(init, xt, yt, weights, masks)
            return self._optimize(init, xt, yt, weights, masks, steps)

    def _newton_binary(self, init: dict[str, Any], xt: Any, yt: Any, weights: Any, masks: np.ndarray,
                       max_iter: int = 50, tol: float = 1e-10) -> dict[str, Any]:
        """K binary logistic regressions solved exactly by damped Newton steps, in float64.

        With two classes the softmax head is one logit difference beta (W = [-beta/2, beta/2],
        so the L2 penalty wd/2 ||W||^2 is wd/4 ||beta||^2). Each Newton system is solved in the
        smaller of the primal (d x d) and, via Woodbury, the dual (labels x labels) space, so a
        few hundred labels on 768-d raw pixels cost milliseconds where L-BFGS took seconds. The
        bias is a constant feature of value BIAS_SCALE, so its (shared) penalty is negligible.
        """
        import torch

        dev, f64 = self.device, torch.float64
        K, n = masks.shape
        X = torch.cat([xt.to(f64), torch.full((n, 1), BIAS_SCALE, dtype=f64, device=dev)], 1)
        D = X.shape[1]
        y = (yt == 1).to(f64)
        a = torch.as_tensor(masks, dtype=f64, device=dev) * weights.to(f64)[yt][None, :]
        a = a / a.sum(1, keepdim=True).clamp_min(1e-300)  # class-weighted mean loss per head
        mu = self.weight_decay / 2
        W0, b0 = init["W"].to(dev, f64), init["b"].to(dev, f64)
        beta = torch.cat([W0[:, 1] - W0[:, 0], ((b0[1] - b0[0]) / BIAS_SCALE).reshape(1)]).repeat(K, 1)
        XT = X.T.contiguous()  # products are taken as X @ v and X^T @ w: column-major ones run several times faster
        if n >= D and D > NEWTON_CG_DIM:
            # All K heads by Newton steps whose systems are solved by conjugate gradients (float32 Hessian-vector
            # products, two labels x dims products each), preconditioned by one Cholesky factor of the main head's
            # Hessian: last fit's factor when the dims agree (a round adds one batch: the curvature barely moves),
            # rebuilt at the current point only when a solve needed more than PCG_REFRESH iterations. The start is
            # zero, not last round's weights: from those the new batch's labels sit far on the wrong side and the
            # damped steps took 12 Hessian builds where zero takes 8 (benchmarks/heads_speed.py).
            beta = torch.zeros_like(beta)
            X32, XT32 = X.float(), XT.float()
            factor = self._factor if self._factor is not None and self._factor.shape[0] == D else None
            state = {"L": factor, "iters": 0}

            def solve(g: Any, s: Any) -> Any:
                if state["L"] is None or state["iters"] > PCG_REFRESH:
                    state["L"] = _cholesky(X, XT, s[0], mu)
                d, state["iters"] = _pcg(X32, XT32, s, mu, g, state["L"])
                return d

            beta = _newton(X, XT, y, a, mu, beta, solve, max_iter, tol)
            self._factor = state["L"]
        else:
            gram = X @ XT if n < D else None
            eye = torch.eye(min(n, D), dtype=f64, device=dev)

            def solve(g: Any, s: Any) -> Any:
                if gram is None:  # primal: (X^T S X + mu I) delta = g
                    H = torch.einsum("kn,nd,ne->kde", s, X, X) + mu * eye
                    # Cholesky, not LU: H is positive definite, and MKL's batched LU fails at ~769 dims
                    return torch.cholesky_solve(g.unsqueeze(-1), torch.linalg.cholesky(H)).squeeze(-1)
                # dual (Woodbury): delta = (g - X^T R (mu I + R G R)^-1 R X g) / mu, R = diag(sqrt(s))
                r = s.sqrt()
                M = mu * eye + r.unsqueeze(2) * gram * r.unsqueeze(1)
                u = torch.linalg.solve(M, (r * (X @ g.T).T).unsqueeze(-1)).squeeze(-1)
                return (g - (XT @ (r * u).T).T) / mu

            beta = _newton(X, XT, y, a, mu, beta, solve, max_iter, tol)
        half = (beta[:, :-1] / 2).to(torch.float32)
        bias = (beta[:, -1] * BIAS_SCALE / 2).to(torch.float32)
        return {"W": torch.stack([-half, half], 2), "b": torch.stack([-bias, bias], 1)}

    def _optimize(self, init: dict[str, Any], xt: Any, yt: Any, weights: Any, masks: np.ndarray,
                  steps: int) -> dict[str, Any]:
        import torch

        K, n = masks.shape
        P = {name: t.to(self.device).unsqueeze(0).repeat(K, *([1] * t.dim())).contiguous().requires_grad_(True)
             for name, t in init.items()}
        mw = torch.as_tensor(masks, device=self.device, dtype=torch.float32) * weights[yt][None, :]
        target = yt.unsqueeze(0).expand(K, n).unsqueeze(2)
        decay = [P["W"]] if self.kind == "logistic" else [P["W1"], P["W2"]]

        def loss_on(rows: Any, train: bool) -> Any:
            logits = self._forward(P, xt if rows is None else xt[rows], train=train)
            tgt = target if rows is None else target[:, rows]
            w = mw if rows is None else mw[:, rows]
            ce = torch.logsumexp(logits, 2) - logits.gather(2, tgt).squeeze(2)
            return ((ce * w).sum(1) / w.sum(1).clamp_min(1e-12)).sum()

        if self.kind == "logistic":
            # tolerances measured on UC Merced raw pixels: tighter ones add iterations, not accuracy
            opt = torch.optim.LBFGS(list(P.values()), lr=1.0, max_iter=steps, history_size=20,
                                    line_search_fn="strong_wolfe", tolerance_grad=1e-5, tolerance_change=1e-7)

            def closure() -> Any:
                opt.zero_grad()
                loss = loss_on(None, False) + 0.5 * self.weight_decay * sum(p.pow(2).sum() for p in decay)
                loss.backward()
                return loss

            opt.step(closure)
        else:
            torch.manual_seed(self.seed + self.rounds)
            opt = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                     {"params": [P["b1"], P["b2"]], "weight_decay": 0.0}], lr=self.lr)
            gen = torch.Generator(device="cpu").manual_seed(self.seed + self.rounds)
            batch = n if n <= 2048 else 1024
            for _ in range(steps):
                rows = None if batch == n else torch.randint(0, n, (batch,), generator=gen).to(self.device)
                opt.zero_grad()
                loss_on(rows, True).backward()
                opt.step()
        return {name: t.detach() for name, t in P.items()}

    def _class_weights(self, y: np.ndarray) -> Any:
        import torch

        counts = np.bincount(y, minlength=self.n_classes).astype(np.float64)
        if self.class_weight == "balanced":
            w = np.where(counts > 0, counts.sum() / (np.count_nonzero(counts) * np.maximum(counts, 1)), 0.0)
        else:
            w = (counts > 0).astype(np.float64)
        return torch.as_tensor(w, dtype=torch.float32, device=self.device)

    def _tensor(self, X: np.ndarray) -> Any:
        import torch

        X = np.ascontiguousarray(X)
        if not X.flags.writeable:  # memmap rows: copy (a memcpy) so torch never wraps read-only memory
            X = X.copy()
        x = torch.from_numpy(X).to(self.device).float()
        return (x - torch.as_tensor(self.mean, device=self.device)) / torch.as_tensor(self.std, device=self.device)

    def _set_temperature(self, logits: np.ndarray, y: np.ndarray, weights: Any, method: str) -> None:
        t = fit_temperature(logits, y, weights.cpu().numpy())
        self.temperature = t
        self.calibration = {"method": method, "temperature": t, "n": int(len(y))}

    # ------------------------------------------------------------------ scoring
    def predict_logits(self, X: np.ndarray, chunk: int | None = None, ids: np.ndarray | None = None) -> np.ndarray:
        """Raw (uncalibrated) logits for every row of `X` (or rows `ids`), one chunked pass.

        The standardization is folded into the first layer (x @ (W / std) + b - (mean / std) @ W),
        so float16 embeddings go straight into a float16 matrix product: no float32 copy of the
        data is ever made, which is what makes a million rows a fraction of a second on CPU.
        """
        import torch

        if self.params is None:
            raise CuratorError("this head is not trained yet", "call head.fit(X, y) first")
        n = X.shape[0] if ids is None else len(ids)
        if X.ndim != 2 or X.shape[1] != self.dim:
            raise CuratorError(f"embeddings have shape {tuple(X.shape)} but the head was trained on {self.dim} dims",
                               "score with the same embedding run the head was fitted on")
        chunk = chunk or (1 << 18 if self.kind == "logistic" else 1 << 15)
        first = "W" if self.kind == "logistic" else "W1"
        mean = torch.as_tensor(self.mean, device=self.device)
        std = torch.as_tensor(self.std, device=self.device)
        W = self.params[first] / std[:, None]
        b = self.params["b" if self.kind == "logistic" else "b1"] - (mean / std) @ self.params[first]
        half = X.dtype == np.float16 and float(W.abs().max()) < 1e4  # fp16 range kept with a wide margin
        Wh = W.half() if half else W
        out = np.empty((n, self.n_classes), dtype=np.float32)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")  # read-only memmap
            for s in range(0, n, chunk):
                rows = X[s:s + chunk] if ids is None else X[np.asarray(ids[s:s + chunk])]
                x = torch.from_numpy(np.ascontiguousarray(rows)).to(self.device)
                if half:
                    try:
                        z = (x @ Wh).float() + b
                    except RuntimeError:  # a torch build without float16 matmul on this device
                        half = False
                if not half:
                    z = x.float() @ W + b
                if self.kind == "mlp":
                    z = torch.nn.functional.gelu(z) @ self.params["W2"] + self.params["b2"]
                out[s:s + len(rows)] = z.cpu().numpy()
        return out

    def predict_proba(self, X: np.ndarray, chunk: int | None = None, ids: np.ndarray | None = None) -> np.ndarray:
        """Calibrated class probabilities, float32 [n, n_classes]."""
        return softmax(self.predict_logits(X, chunk=chunk, ids=ids) / self.temperature)

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        import torch

        as_t = (lambda a: None if a is None else torch.from_numpy(np.asarray(a, dtype=np.float32)))
        return {"config": self.config(), "weights": None if self.params is None else
                {k: v.detach().cpu() for k, v in self.params.items()},
                "mean": as_t(self.mean), "std": as_t(self.std), "temperature": float(self.temperature),
                "rounds": int(self.rounds), "calibration": json.loads(json.dumps(self.calibration))}

    def save(self, path: str | os.PathLike) -> None:
        """Write the head atomically (torch.save to a temp file, then rename)."""
        import torch

        with atomic_path(path) as tmp:
            torch.save(self.state(), tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | None = "auto") -> "Head":
        import torch

        try:
            state = torch.load(Path(path), map_location="cpu", weights_only=True)  # tensors and plain data only
            head = cls(**state["config"], device=device)
        except Exception as e:
            raise CuratorError(f"cannot load classifier head {path}: {e}",
                               "the file is corrupt or from another version; "
                               "delete it to start the head fresh") from None
        if state["mean"] is not None:
            head.set_scaler(state["mean"].numpy(), state["std"].numpy())
        if state["weights"] is not None:
            head.params = {k: v.to(head.device) for k, v in state["weights"].items()}
        head.temperature, head.rounds = float(state["temperature"]), int(state["rounds"])
        head.calibration = state.get("calibration", {})
        return head


def _newton(X: Any, XT: Any, y: Any, a: Any, mu: float, beta: Any, solve: Callable[[Any, Any], Any],
            max_iter: int, tol: float) -> Any:
    """Damped Newton for K stacked L2-regularized logistic losses sum_i a_ki (softplus(z) - y z) + mu/2 |beta_k|^2;
    `solve(g, s)` returns the K Newton directions for gradients g [K, D] and curvatures s [K, n]."""
    import torch

    steps = torch.tensor([0.5 ** i for i in range(12)], dtype=X.dtype, device=X.device)

    def objective(z: Any, b: Any) -> Any:  # z: [..., K, n], b: [..., K, D]
        return (a * (torch.nn.functional.softplus(z) - y * z)).sum(-1) + 0.5 * mu * (b * b).sum(-1)

    z = (X @ beta.T).T
    for _ in range(max_iter):
        p = torch.sigmoid(z)
        g = ((XT @ (a * (p - y)).T).T + mu * beta).contiguous()  # [K, D]; contiguous: batched LAPACK solves need it
        delta = solve(g, a * p * (1 - p))
        decrement = (g * delta).sum(1)  # Newton decrement^2: twice the predicted decrease
        if float(decrement.max()) < tol:
            break
        dz = (X @ delta.T).T
        f0 = objective(z, beta)
        trial = objective(z - steps[:, None, None] * dz, beta - steps[:, None, None] * delta)  # [T, K]
        ok = trial <= f0 - 1e-4 * steps[:, None] * decrement  # Armijo, per head
        first = torch.where(ok.any(0), ok.to(torch.int64).argmax(0),
                            torch.full_like(ok[0], len(steps) - 1, dtype=torch.int64))
        t = steps[first].unsqueeze(1)
        beta = beta - t * delta
        z = z - t * dz
    return beta


def _cholesky(X: Any, XT: Any, s: Any, mu: float) -> Any:
    """Cholesky factor of one head's Hessian X^T diag(s) X + mu I, the product in float32 (a Newton direction
    only needs to be close: the float64 gradient and line search keep the solution exact)."""
    import torch

    H = (XT.float() @ (X.float() * s.float()[:, None])).double()
    H.diagonal().add_(mu)
    return torch.linalg.cholesky(H)


def _pcg(X: Any, XT: Any, s: Any, mu: float, g: Any, L: Any, max_iter: int = 200) -> tuple[Any, int]:
    """Solve (X^T diag(s_k) X + mu I) d_k = g_k for K heads at once by conjugate gradients preconditioned with one
    Cholesky factor L (a Hessian-vector product is two labels x dims products in X's dtype, never a dims x dims
    matrix); inexact while far from the optimum, exact near it (Eisenstat-Walker forcing terms). Returns the
    directions [K, D] (in g's dtype) and the iterations taken."""
    import torch

    sT = s.T.to(X.dtype)

    def hv(v: Any) -> Any:  # v [D, K]
        return (XT @ (sT * (X @ v.to(X.dtype)))).to(v.dtype) + mu * v

    b = g.T.contiguous()
    d = torch.zeros_like(b)
    r = b.clone()
    zr = torch.cholesky_solve(r, L)
    q = zr.clone()
    rz = (r * zr).sum(0)
    gnorm = b.norm(dim=0)
    stop = torch.minimum(torch.full_like(gnorm, 0.1), gnorm.sqrt()) * gnorm
    it = 0
    for it in range(max_iter):
        if not bool((r.norm(dim=0) > stop).any()):
            break
        hq = hv(q)
        alpha = rz / (q * hq).sum(0).clamp_min(1e-300)
        d += alpha * q
        r -= alpha * hq
        zr = torch.cholesky_solve(r, L)
        rz_new = (r * zr).sum(0)
        q = zr + (rz_new / rz.clamp_min(1e-300)) * q
        rz = rz_new
    return d.T, it


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run small fits on one thread: for tensors of a few hundred rows, thread hand-offs cost more than the
    arithmetic on a busy 2-core machine."""
    import torch

    if n is None or torch.get_num_threads() <= n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def fit_temperature(logits: np.ndarray, y: np.ndarray, class_weight: np.ndarray | None = None,
                    grid: np.ndarray = _T_GRID) -> float:
    """The temperature T minimizing the (class-weighted) NLL of softmax(logits / T): a log-spaced grid
    search (a 1-D convex problem, so the grid is exact to its spacing and never diverges)."""
    logits = np.asarray(logits, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    w = np.ones(logits.shape[1], np.float32) if class_weight is None else np.asarray(class_weight, np.float32)
    sw = w[y]
    rows = np.arange(len(y))

    def nll(ts: np.ndarray) -> np.ndarray:
        out = np.empty(len(ts), dtype=np.float64)
        step = max(1, int(4e6 // max(logits.size, 1)))  # bound memory to ~16 MB per block of temperatures
        for s in range(0, len(ts), step):
            scaled = logits[None, :, :] / ts[s:s + step, None, None]
            m = scaled.max(axis=2, keepdims=True)
            lse = np.log(np.exp(scaled - m).sum(axis=2)) + m[..., 0]
            out[s:s + step] = ((lse - scaled[:, rows, y]) * sw).sum(axis=1) / max(sw.sum(), 1e-12)
        return out

    # The NLL is convex in 1/T, so unimodal along the grid: every 8th point, then every point around the best
    # of those gives the grid's own argmin with a fifth of the evaluations (a third of a 3,000-label fit's time).
    coarse = np.arange(0, len(grid), 8)
    best = int(coarse[int(np.argmin(nll(grid[coarse])))])
    fine = np.arange(max(0, best - 8), min(len(grid), best + 9))
    return float(grid[int(fine[int(np.argmin(nll(grid[fine])))])])
