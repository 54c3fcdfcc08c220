"""Standard errors, intervals, p-values and influence, against statsmodels and closed forms."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_iris
from sklearn.preprocessing import StandardScaler

from sktorch_lr import TorchLogisticRegression
from sktorch_lr.inspection import GradientInspector

sm = pytest.importorskip("statsmodels.api")

RTOL = 1e-5


def _binary(n=400, seed=0):
    """Non-separable data with features of different scales and offsets."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)) * [1, 2, 0.5, 3] + [0, 1, -2, 5]
    logits = X @ [0.8, -0.5, 1.0, 0.2] - 1
    y = (rng.random(n) < 1 / (1 + np.exp(-logits))).astype(int)
    return X, y, logits


def _fit(X, y, C=np.inf, **kw):
    return TorchLogisticRegression(C=C, tol=1e-10, **kw).fit(X, y)


def _design(X):
    return sm.add_constant(X, prepend=False)  # intercept last, as ours


@pytest.fixture(scope="module")
def binary():
    X, y, _ = _binary()
    ins = GradientInspector(_fit(X, y), X, y)
    glm = sm.GLM(y, _design(X), family=sm.families.Binomial())
    return X, y, ins, glm


def test_nonrobust_matches_statsmodels_logit(binary):
    X, y, ins, _ = binary
    ref = sm.Logit(y, _design(X)).fit(disp=0, tol=1e-12)
    np.testing.assert_allclose(ins.params(), ref.params, rtol=RTOL)
    np.testing.assert_allclose(ins.covariance("nonrobust"), ref.cov_params(), rtol=RTOL)
    np.testing.assert_allclose(ins.covariance(), ref.cov_params(), rtol=RTOL)  # auto, C=inf
    table = ins.summary(alpha=0.1)
    np.testing.assert_allclose(table["std_err"], ref.bse, rtol=RTOL)
    np.testing.assert_allclose(table["z"], ref.tvalues, rtol=RTOL)
    np.testing.assert_allclose(table["p_value"], ref.pvalues, rtol=RTOL)
    np.testing.assert_allclose(table[["ci_low", "ci_high"]], ref.conf_int(0.1), rtol=RTOL)
    assert list(table.index) == ["x0", "x1", "x2", "x3", "intercept"]
    assert list(table.columns) == ["coef", "std_err", "z", "p_value", "ci_low", "ci_high"]


def test_a_default_fit_is_polished_to_the_optimum_before_inference():
    """The estimator stops within tol=1e-4 of J's optimum in its Newton decrement: on
    20,000 rows that is hundredths of a standard error, visible in the p-values."""
    rng = np.random.default_rng(2)
    n, d = 20_000, 20
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3, size=d) + 2 * rng.normal(size=d)
    y = (rng.random(n) < 1 / (1 + np.exp(-(X - X.mean(0)) @ rng.normal(size=d) * 0.3))).astype(int)
    est = TorchLogisticRegression(C=np.inf).fit(X, y)
    ref = sm.Logit(y, _design(X)).fit(disp=0, tol=1e-12)
    fitted = np.r_[est.coef_.ravel(), est.intercept_]
    assert np.abs(fitted / ref.params - 1).max() > 1e-4  # the fit as it stopped
    ins = GradientInspector(est, X, y)
    table = ins.summary()
    np.testing.assert_allclose(ins.params(), ref.params, rtol=RTOL)
    np.testing.assert_allclose(table["coef"], ref.params, rtol=RTOL)
    np.testing.assert_allclose(table["std_err"], ref.bse, rtol=RTOL)
    np.testing.assert_allclose(table["p_value"], ref.pvalues, rtol=RTOL, atol=1e-300)
    # It only polishes: within a standard error's hundredth of what the fit reached.
    assert np.all(np.abs(ins.params() - fitted) < 0.05 * table["std_err"])
    # Parameters given to the inspector are inspected as they are.
    given = GradientInspector(est, X, y, coef=est.coef_, intercept=est.intercept_)
    np.testing.assert_array_equal(given.params(), fitted)
    # So are parameters far from these data's optimum (another model's).
    flipped = GradientInspector(est, X, 1 - y)
    np.testing.assert_array_equal(flipped.params(), fitted)


def test_hc0_matches_statsmodels_glm_and_hc1_hc3_the_textbook(binary):
    X, y, ins, glm = binary
    hc0 = glm.fit(cov_type="HC0", tol=1e-12)
    np.testing.assert_allclose(ins.covariance("HC0"), hc0.cov_params(), rtol=RTOL)
    # HC1-HC3 as R's sandwich::vcovHC (statsmodels' GLM falls back to HC0 for them).
    res = glm.fit(tol=1e-12)
    bread = np.linalg.inv(-res.model.hessian(res.params))
    scores = res.model.score_obs(res.params)
    h = res.get_hat_matrix_diag()
    n, p = X.shape[0], X.shape[1] + 1
    for kind, weights, factor in (
        ("HC1", np.ones(n), n / (n - p)),
        ("HC2", 1 / (1 - h), 1.0),
        ("HC3", 1 / (1 - h) ** 2, 1.0),
    ):
        meat = (scores * weights[:, None]).T @ scores
        np.testing.assert_allclose(ins.covariance(kind), factor * bread @ meat @ bread, rtol=RTOL)


def test_influence_matches_statsmodels_glm_influence(binary):
    _, _, ins, glm = binary
    ref = glm.fit(tol=1e-12).get_influence()
    ours = ins.influence()
    np.testing.assert_allclose(ours.leverage, ref.hat_matrix_diag, rtol=RTOL)
    np.testing.assert_allclose(ours.cooks_distance, ref.cooks_distance[0], rtol=RTOL)
    np.testing.assert_allclose(ours.dfbeta, ref.d_params, rtol=RTOL, atol=1e-12)


def test_sample_weights_are_statsmodels_var_weights():
    # Each row is one observation whose log-likelihood counts s_i times: the sandwich's
    # meat takes s_i^2, and leaving a row out removes all of its weight. statsmodels'
    # freq_weights read them as copies instead (meat s_i, one copy left out).
    X, y, _ = _binary()
    w = np.random.default_rng(3).integers(1, 4, len(y)).astype(float)
    est = TorchLogisticRegression(C=np.inf, tol=1e-10).fit(X, y, sample_weight=w)
    ins = GradientInspector(est, X, y, sample_weight=w)
    glm = sm.GLM(y, _design(X), family=sm.families.Binomial(), var_weights=w)
    np.testing.assert_allclose(
        ins.covariance("nonrobust"), glm.fit(tol=1e-12).cov_params(), rtol=RTOL
    )
    hc0 = glm.fit(cov_type="HC0", tol=1e-12).cov_params()
    np.testing.assert_allclose(ins.covariance("HC0"), hc0, rtol=RTOL)
    ref = glm.fit(tol=1e-12).get_influence()
    ours = ins.influence()
    np.testing.assert_allclose(ours.leverage, ref.hat_matrix_diag, rtol=RTOL)
    np.testing.assert_allclose(ours.cooks_distance, ref.cooks_distance[0], rtol=RTOL)
    np.testing.assert_allclose(ours.dfbeta, ref.d_params, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("C", [np.inf, 1.0])
def test_rows_of_weight_zero_change_only_hc1s_count(C):
    """Weight-0 rows drop out of every measure; HC1's n counts them, as R's vcovHC."""
    X, y, _ = _binary(n=300, seed=3)
    w = np.random.default_rng(3).exponential(size=300)
    w[::4] = 0.0
    keep = w > 0
    est = TorchLogisticRegression(C=C, tol=1e-10).fit(X, y, sample_weight=w)
    every = GradientInspector(est, X, y, sample_weight=w)
    kept = GradientInspector(est, X[keep], y[keep], sample_weight=w[keep])
    for kind in ("nonrobust", "HC0", "HC2", "HC3", "sandwich", "laplace"):
        np.testing.assert_allclose(every.covariance(kind), kept.covariance(kind), rtol=1e-10)
    p, n_all, n_kept = X.shape[1] + 1, len(y), keep.sum()
    ratio = (n_all / (n_all - p)) / (n_kept / (n_kept - p))
    np.testing.assert_allclose(every.covariance("HC1"), ratio * kept.covariance("HC1"), rtol=1e-10)
    influence = every.influence()
    assert (influence.leverage[~keep] == 0).all() and (influence.dfbeta[~keep] == 0).all()
    np.testing.assert_allclose(influence.leverage[keep], kept.influence().leverage, rtol=1e-10)


def test_multinomial_matches_mnlogit_with_the_first_class_as_reference():
    X, _, logits = _binary()
    rng = np.random.default_rng(1)
    y = np.digitize(logits + rng.logistic(size=len(logits)), [-1.5, 0.5])
    ins = GradientInspector(_fit(X, y), X, y)
    ref = sm.MNLogit(y, _design(X)).fit(disp=0, method="newton", tol=1e-12, maxiter=100)
    d, K1 = X.shape[1], 2
    # statsmodels: class-major (features, const) per class; ours: all features, then intercepts.
    order = [k * (d + 1) + j for k in range(K1) for j in range(d)]
    order += [k * (d + 1) + d for k in range(K1)]
    params = np.asarray(ref.params).T.reshape(-1)[order]
    np.testing.assert_allclose(ins.params(), params, rtol=RTOL)
    cov = np.asarray(ref.cov_params())[np.ix_(order, order)]
    np.testing.assert_allclose(ins.covariance("nonrobust"), cov, rtol=RTOL)
    table = ins.summary()
    np.testing.assert_allclose(table["std_err"], np.sqrt(np.diag(cov)), rtol=RTOL)
    np.testing.assert_allclose(
        table["p_value"], np.asarray(ref.pvalues).T.reshape(-1)[order], rtol=RTOL
    )
    assert table.index[0] == "1 vs 0: x0" and table.index[-1] == "2 vs 0: intercept"


def _closed_form_pieces(X, y, est, C):
    """H of F = sum loss + ||W||^2 / (2C) and the per-sample gradients, by hand."""
    Xa = np.hstack([X, np.ones((len(X), 1))])
    theta = np.concatenate([est.coef_.ravel(), est.intercept_])
    p = 1 / (1 + np.exp(-Xa @ theta))
    H = Xa.T @ (Xa * (p * (1 - p))[:, None])
    H[:-1, :-1] += np.eye(X.shape[1]) / C
    G = (p - y)[:, None] * Xa
    return H, G


@pytest.mark.parametrize("C", [0.01, 1.0])
def test_penalised_kinds_are_their_closed_forms(C):
    X, y, _ = _binary()
    est = _fit(X, y, C=C)
    ins = GradientInspector(est, X, y)
    H, G = _closed_form_pieces(X, y, est, C)
    H_inv = np.linalg.inv(H)
    sandwich = H_inv @ (G.T @ G) @ H_inv
    np.testing.assert_allclose(ins.covariance("laplace"), H_inv, rtol=RTOL)
    np.testing.assert_allclose(ins.covariance("nonrobust"), H_inv, rtol=RTOL)
    np.testing.assert_allclose(ins.covariance("sandwich"), sandwich, rtol=RTOL)
    np.testing.assert_allclose(ins.covariance(), sandwich, rtol=RTOL)  # auto with a penalty
    Xa = np.hstack([X, np.ones((len(X), 1))])
    p = 1 / (1 + np.exp(-(Xa @ np.concatenate([est.coef_.ravel(), est.intercept_]))))
    h = np.einsum("ij,jk,ik->i", Xa, H_inv, Xa) * p * (1 - p)
    np.testing.assert_allclose(ins.influence().leverage, h, rtol=RTOL)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_multinomial_leverage_is_the_trace_of_each_samples_hessian_term(fit_intercept, monkeypatch):
    # h_i = tr(H^-1 H_i), H_i = J_i^T (diag(p_i) - p_i p_i^T) J_i, formed by hand for
    # each sample; the leverage works on blocks of H^-1 instead, a few rows at a time.
    from sktorch_lr import _inference

    monkeypatch.setattr(_inference, "CHUNK_NUMBERS", 500)  # several blocks of rows
    X, y = load_iris(return_X_y=True)
    w = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    est = TorchLogisticRegression(C=2.0, tol=1e-10, fit_intercept=fit_intercept)
    est.fit(X, y, sample_weight=w)
    ins = GradientInspector(est, X, y, sample_weight=w)
    K, d = 3, X.shape[1]
    P = K * d + K * fit_intercept
    p = est.predict_proba(X)
    terms = []
    for i in range(len(X)):
        J = np.zeros((K, P))  # d z_i / d theta
        for k in range(K):
            J[k, k * d : (k + 1) * d] = X[i]
            if fit_intercept:
                J[k, K * d + k] = 1.0
        terms.append(w[i] * J.T @ (np.diag(p[i]) - np.outer(p[i], p[i])) @ J)
    H = sum(terms)
    H[np.arange(K * d), np.arange(K * d)] += 1 / 2.0
    H_inv = np.linalg.pinv(H, hermitian=True)  # the intercepts' shared shift is null
    expected = [np.trace(H_inv @ term) for term in terms]
    np.testing.assert_allclose(ins.influence().leverage, expected, rtol=1e-8)


def test_sandwich_is_the_covariance_of_ridge_estimates():
    """Over data sets drawn from one model, the sandwich's average is the spread of the fits."""
    rng = np.random.default_rng(0)
    beta = np.array([1.0, -0.5, 0.25])
    fits, sandwiches, laplaces = [], [], []
    for _ in range(200):
        X = rng.normal(size=(300, 3))
        y = (rng.random(300) < 1 / (1 + np.exp(-(X @ beta + 0.3)))).astype(int)
        est = TorchLogisticRegression(C=0.02, tol=1e-8).fit(X, y)
        ins = GradientInspector(est, X, y)
        fits.append(ins.params())
        sandwiches.append(ins.covariance("sandwich"))
        laplaces.append(ins.covariance("laplace"))
    empirical = np.var(np.asarray(fits), axis=0, ddof=1)
    predicted = np.diag(np.mean(sandwiches, axis=0))
    np.testing.assert_allclose(predicted, empirical, rtol=0.25)
    # The naive inverse penalised Hessian overstates the spread of a shrunk estimator.
    assert (np.diag(np.mean(laplaces, axis=0))[:3] > 1.3 * empirical[:3]).all()


def test_influence_on_predicts_leave_one_out_test_losses():
    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    train, test = np.arange(0, 400), np.arange(400, 569)
    est = TorchLogisticRegression(C=1.0, tol=1e-10).fit(X[train], y[train])
    ins = GradientInspector(est, X[train], y[train])
    h = ins.influence().leverage
    candidates = np.flatnonzero(h < 0.1)
    picked = candidates[np.linspace(0, len(candidates) - 1, 25).round().astype(int)]
    predicted = ins.influence_on(X[test], y[test])[picked]  # (25, n_test)

    def test_losses(params):
        z = X[test] @ params[:-1] + params[-1]
        return np.logaddexp(0, z) - y[test] * z

    base = test_losses(ins.params())
    exact = np.array([test_losses(p) - base for p in ins.loo_refit(picked)])
    r = np.corrcoef(predicted.ravel(), exact.ravel())[0, 1]
    slope = np.polyfit(exact.ravel(), predicted.ravel(), 1)[0]
    assert r >= 0.99
    assert 0.9 <= slope <= 1.1


def test_dfbeta_estimates_the_exact_leave_one_out_change(binary):
    X, y, ins, _ = binary
    idx = [0, 5, 17]
    exact = ins.params() - ins.loo_refit(idx)
    np.testing.assert_allclose(ins.influence().dfbeta[idx], exact, rtol=0.05, atol=1e-4)


def test_loo_refit_checks_its_indices(binary):
    X, _, ins, _ = binary
    with pytest.raises(IndexError, match="rows of X"):
        ins.loo_refit([len(X)])
    with pytest.raises(TypeError, match="integers"):
        ins.loo_refit([1.5])  # once refitted without row 1, silently
    assert ins.loo_refit([]).shape == (0, X.shape[1] + 1)
    np.testing.assert_array_equal(ins.loo_refit(-1), ins.loo_refit([len(X) - 1]))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda ins: ins.summary(alpha="0.05"), TypeError, "alpha must be a number"),
        (lambda ins: ins.summary(alpha=True), TypeError, "alpha must be a number"),
        (lambda ins: ins.summary(alpha=1.0), ValueError, r"alpha must be in \(0, 1\)"),
        (lambda ins: ins.covariance("bootstrap", n_resamples=2.5), TypeError, "an integer"),
        (lambda ins: ins.covariance("bootstrap", n_resamples=1), ValueError, "at least 2"),
        (lambda ins: ins.covariance("HC4"), ValueError, "kind must be one of"),
    ],
)
def test_bad_arguments_get_clear_errors(binary, call, error, match):
    _, _, ins, _ = binary
    with pytest.raises(error, match=match):
        call(ins)


def test_l1_needs_the_bootstrap():
    X, y, _ = _binary()
    est = TorchLogisticRegression(C=0.05, l1_ratio=1.0).fit(X, y)
    ins = GradientInspector(est, X, y)
    with pytest.raises(ValueError, match="bootstrap"):
        ins.covariance()
    with pytest.raises(ValueError, match="bootstrap"):
        ins.summary("HC0")
    cov = ins.covariance("bootstrap", n_resamples=30, random_state=0)
    assert cov.shape == (5, 5)
    assert (np.linalg.eigvalsh(cov) > -1e-12).all()


def test_bootstrap_summary_names_the_parameters_it_never_moved():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6))
    y = (X[:, 0] + rng.normal(size=200) > 0).astype(int)
    ins = GradientInspector(TorchLogisticRegression(C=0.05, l1_ratio=1.0).fit(X, y), X, y)
    with pytest.warns(UserWarning, match=r"standard error of 0 .*x1") as record:
        table = ins.summary("bootstrap", n_resamples=30, random_state=0)
    never_moved = table.index[table["std_err"] == 0]
    assert len(never_moved) > 0 and "x0" not in never_moved
    assert table.loc[never_moved, ["z", "p_value"]].isna().all().all()
    assert table.drop(never_moved)[["z", "p_value"]].notna().all().all()
    assert str(len(never_moved)) in str(record[0].message)


def test_bootstrap_agrees_with_the_sandwich_for_l2():
    X, y, _ = _binary(n=600)
    ins = GradientInspector(TorchLogisticRegression(C=1.0).fit(X, y), X, y)
    boot = np.diag(ins.covariance("bootstrap", n_resamples=150, random_state=0))
    np.testing.assert_allclose(boot, np.diag(ins.covariance("sandwich")), rtol=0.35)


def test_separation_warns_and_a_singular_hessian_raises():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2))
    y = (X[:, 0] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = TorchLogisticRegression(C=np.inf, max_iter=50).fit(X, y)
    ins = GradientInspector(est, X, y)
    with pytest.warns(UserWarning, match="separated"):
        ins.covariance()
    # No optimum: Newton's steps would march towards infinity (the distance falling
    # about e times a step); the inference stays at the fit's parameters.
    np.testing.assert_array_equal(ins.params(), np.r_[est.coef_.ravel(), est.intercept_])
    Xc = np.hstack([X, X[:, :1]])  # a collinear column, no penalty
    yn = (rng.random(100) < 0.5).astype(int)
    est = TorchLogisticRegression(C=np.inf).fit(Xc, yn)
    with pytest.raises(ValueError, match="singular"):
        GradientInspector(est, Xc, yn).covariance()


@pytest.mark.parametrize("seed", [111, 116, 135])
def test_raw_units_over_six_decades_are_not_a_singular_hessian(seed):
    # Columns scaled by 1e-3 to 1e3 and offset: H's eigenvalues span 1e16 and more, yet
    # every coefficient is identified (statsmodels gives them all). Judged on H's own
    # spectrum, these once raised "singular"; the Jacobi-scaled spectrum does not care
    # about units. A default fit, polished by the inspector, matches statsmodels.
    r = np.random.RandomState(seed)
    n, d = int(r.choice([150, 400, 1000, 3000])), int(r.choice([1, 2, 5, 9, 20]))
    scale = 10.0 ** r.uniform(-3, 3, d) if r.rand() < 0.5 else np.ones(d)
    Z = r.randn(n, d)
    beta = r.randn(d) * r.choice([0.3, 1.0])
    y = (r.rand(n) < 1 / (1 + np.exp(-(Z @ beta + r.randn())))).astype(int)
    X = (Z + r.choice([0, 5, 100]) * r.randn(d)) * scale
    assert scale.max() / scale.min() > 1e4
    ins = GradientInspector(TorchLogisticRegression(C=np.inf).fit(X, y), X, y)
    H = ins.hessian()["autograd"]
    assert np.linalg.cond(H) > 1e14
    ref = sm.Logit(y, _design(X)).fit(disp=0, tol=1e-12, maxiter=200)
    table = ins.summary()
    np.testing.assert_allclose(table["coef"], ref.params, rtol=RTOL)
    np.testing.assert_allclose(table["std_err"], ref.bse, rtol=RTOL)


def _offset_columns(seed, n_classes):
    """Columns like ``300 +- 0.01``: offsets up to 1e5 of their spreads, scales 1e-3 to 1e3."""
    rng = np.random.default_rng(seed)
    n, d = 1500, 5
    Z = rng.normal(size=(n, d))
    X = Z * 10 ** rng.uniform(-3, 3, d) + rng.normal(0, 300, d)
    logits = Z @ rng.normal(0, 0.6, (d, n_classes))
    if n_classes == 1:
        y = (rng.random(n) < 1 / (1 + np.exp(-logits[:, 0] - 0.3))).astype(int)
    else:
        P = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        y = (P.cumsum(1) > rng.random(n)[:, None]).argmax(1)
    return X, y


def _standardised_reference(X):
    """statsmodels' design of standardised columns, and ``T`` mapping its parameters
    (features, then const) back to the raw columns' (exact and well conditioned)."""
    mean, sd = X.mean(0), X.std(0)
    d = X.shape[1]
    T = np.zeros((d + 1, d + 1))
    T[:d, :d] = np.diag(1 / sd)
    T[d, :d] = -mean / sd
    T[d, d] = 1
    return _design((X - mean) / sd), T


def _assert_covariance_close(ours, ref, rtol):
    """Entries to ``rtol`` of ``sqrt(ref_ii ref_jj)``: on the scale of the standard
    errors (a covariance entry of correlation 1e-6 has no relative precision to check)."""
    sd = np.sqrt(np.diag(ref))
    np.testing.assert_array_less(np.abs(ours - ref), rtol * np.outer(sd, sd))


@pytest.mark.parametrize("seed", [1000, 1004, 1006])
def test_offset_features_keep_the_inference_precise(seed):
    # In the raw parametrisation the Hessian of such columns is formed and inverted
    # through the cancellation of their offsets: covariances came out 3e-6 to 3e-5
    # off, DFBETA 2e-4 to 5e-4 (statsmodels on the raw columns errs as much). The
    # reference is statsmodels on standardised columns, mapped back exactly.
    X, y = _offset_columns(seed, 1)
    ins = GradientInspector(TorchLogisticRegression(C=np.inf).fit(X, y), X, y)
    D, T = _standardised_reference(X)
    glm = sm.GLM(y, D, family=sm.families.Binomial())
    ref = glm.fit(tol=1e-13)
    np.testing.assert_allclose(ins.params(), T @ ref.params, rtol=1e-8)
    _assert_covariance_close(ins.covariance("nonrobust"), T @ ref.cov_params() @ T.T, 1e-8)
    hc0 = glm.fit(cov_type="HC0", tol=1e-13).cov_params()
    _assert_covariance_close(ins.covariance("HC0"), T @ hc0 @ T.T, 1e-8)
    influence, ref_influence = ins.influence(), ref.get_influence()
    np.testing.assert_allclose(influence.leverage, ref_influence.hat_matrix_diag, rtol=1e-7)
    dfbeta = ref_influence.d_params @ T.T
    scale = abs(dfbeta).max(0)  # each parameter's largest change
    np.testing.assert_allclose(influence.dfbeta / scale, dfbeta / scale, rtol=1e-7, atol=1e-7)


def test_offset_features_are_not_a_singular_multinomial_hessian():
    # The raw parametrisation's cancellation once put an eigenvalue of the Jacobi-scaled
    # Hessian at 4e-12 and raised "singular" for these identified softmax parameters.
    X, y = _offset_columns(2030, 3)
    ins = GradientInspector(TorchLogisticRegression(C=np.inf).fit(X, y), X, y)
    D, T = _standardised_reference(X)
    ref = sm.MNLogit(y, D).fit(disp=0, method="newton", tol=1e-14, maxiter=100)
    d = X.shape[1]
    T2 = np.kron(np.eye(2), T)  # classes 1 and 2 against class 0, blocks of (features, const)
    params = T2 @ np.asarray(ref.params).T.reshape(-1)
    cov = T2 @ np.asarray(ref.cov_params()) @ T2.T
    order = [k * (d + 1) + j for k in range(2) for j in range(d)] + [d, 2 * d + 1]
    np.testing.assert_allclose(ins.params(), params[order], rtol=1e-8)
    _assert_covariance_close(ins.covariance(), cov[np.ix_(order, order)], 1e-8)


def _quasi_separated():
    # A few fitted logits past 80 (probabilities 1 - 1e-35), yet an optimum exists:
    # statsmodels' GLM converges to it in 142 iterations.
    r = np.random.RandomState(156)
    n, d = int(r.choice([150, 400, 1000, 3000])), int(r.choice([1, 2, 5, 9, 20]))
    assert r.rand() >= 0.5  # unscaled columns
    Z = r.randn(n, d)
    beta = r.randn(d) * r.choice([0.3, 1.0])
    y = (r.rand(n) < 1 / (1 + np.exp(-(Z @ beta + r.randn())))).astype(int)
    X = Z + r.choice([0, 5, 100]) * r.randn(d)
    w = r.randint(1, 4, n).astype(float) if r.rand() >= 0.5 else None
    return X, y, w


def test_quasi_separated_default_fit_is_polished_to_the_optimum():
    # The inspector warns about the large logits, and still takes Newton's steps from
    # the default fit (3.7e-4 standard errors off) to the optimum, which exists.
    X, y, w = _quasi_separated()
    est = TorchLogisticRegression(C=np.inf).fit(X, y, sample_weight=w)
    ins = GradientInspector(est, X, y, sample_weight=w)
    with pytest.warns(UserWarning, match="separated"):
        table = ins.summary()
    ref = sm.GLM(y, _design(X), family=sm.families.Binomial(), freq_weights=w)
    ref = ref.fit(tol=1e-13, maxiter=300)
    assert ref.converged
    np.testing.assert_allclose(table["coef"], ref.params, rtol=RTOL)
    np.testing.assert_allclose(table["std_err"], ref.bse, rtol=RTOL)


@pytest.mark.parametrize("multinomial", [False, True])
def test_bootstrap_batch_equals_one_refit_per_resample(multinomial, monkeypatch):
    if multinomial:
        X, y = load_iris(return_X_y=True)
    else:
        X, y, _ = _binary()
    est = TorchLogisticRegression(C=1.0, class_weight="balanced").fit(X, y)
    sw = np.random.default_rng(1).uniform(0.5, 2.0, size=len(y))
    ins = GradientInspector(est, X, y, sample_weight=sw)
    batched = ins.covariance("bootstrap", n_resamples=40, random_state=3)
    monkeypatch.setattr(ins, "_refit_batch", lambda *args: None)
    looped = ins.covariance("bootstrap", n_resamples=40, random_state=3)
    np.testing.assert_allclose(batched, looped, rtol=1e-4, atol=1e-6 * np.abs(looped).max())


def test_balanced_weights_on_data_that_lack_a_class():
    # A bootstrap resample without the rare class, a test set of one class, the
    # inspector on a subset: "balanced" weights once divided by the absent class's
    # zero count and raised.
    X, y = load_iris(return_X_y=True)
    keep = np.r_[np.arange(100), 100, 101]  # class 2: two rows
    X, y = X[keep], y[keep]
    est = TorchLogisticRegression(C=1.0, class_weight="balanced").fit(X, y)
    ins = GradientInspector(est, X, y)
    assert np.isfinite(ins.covariance("bootstrap", n_resamples=50, random_state=0)).all()
    influence = ins.influence_on(X[:5], y[:5])  # unweighted test losses: all of class 0
    assert influence.shape == (len(y), 5) and np.isfinite(influence).all()
    assert np.isfinite(GradientInspector(est, X[:100], y[:100]).summary().to_numpy()).all()


def test_polish_reaches_covariance_entries_of_nearly_uncorrelated_parameters():
    """A drawn problem (1,000 x 6, scales over four decades, offsets): an HC0 entry
    between parameters of correlation 8e-5 moves by the distance from the optimum over
    that correlation. Polished to 1e-6 standard errors it stopped 1.5e-7 short and
    the entry was 6e-5 off statsmodels' (tol=1e-13); every entry now agrees to 1e-5."""
    rng = np.random.default_rng(145)
    n, d, _ = (int(rng.choice(v)) for v in ([60, 200, 1000, 5000], [1, 3, 6, 10], [2, 2, 3, 4]))
    assert (n, d) == (1000, 6)
    scale, shift = 10 ** rng.uniform(-2, 2, d), rng.normal(0, 3, d)
    X = rng.normal(size=(n, d)) * scale + shift
    B = rng.normal(size=(2, d)) / scale * 0.7
    Z = (X - shift) @ B.T + rng.normal(size=2) * 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-(Z[:, 1] - Z[:, 0])))).astype(int)
    ins = GradientInspector(TorchLogisticRegression(C=np.inf).fit(X, y), X, y)
    ref = sm.GLM(y, _design(X), family=sm.families.Binomial()).fit(cov_type="HC0", tol=1e-13)
    np.testing.assert_allclose(ins.covariance("HC0"), ref.cov_params(), rtol=RTOL, atol=0)
    p = ref.fittedvalues
    hessian = _design(X).T @ (_design(X) * (p * (1 - p))[:, None])
    np.testing.assert_allclose(ins.covariance("nonrobust"), np.linalg.inv(hessian), rtol=RTOL)
