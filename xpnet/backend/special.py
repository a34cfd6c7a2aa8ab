"""Special functions NumPy lacks, written once against ``xp``.

``erf`` uses CuPy's kernel on GPU and otherwise evaluates the piecewise rational
approximations of FreeBSD's ``s_erf.c`` (Sun Microsystems, 1993; accurate to about one
ulp in double precision), vectorized: each piece is evaluated on its clipped argument
and selected with ``where``, in float64, then cast back to the input dtype.
"""
__all__ = ['erf', 'erf_rational']

_PP = (1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
       -5.77027029648944159157e-03, -2.37630166566501626084e-05)
_QQ = (1.0, 3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
       1.32494738004321644526e-04, -3.96022827877536812320e-06)
_PA = (-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
       3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02,
       -2.16637559486879084300e-03)
_QA = (1.0, 1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
       1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02)
_RA = (-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
       -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
       -8.12874355063065934246e+01, -9.81432934416914548592e+00)
_SA = (1.0, 1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
       6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
       6.57024977031928170135e+00, -6.04244152148580987438e-02)
_RB = (-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
       -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03,
       -4.83519191608651397019e+02)
_SB = (1.0, 3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
       3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02,
       -2.24409524465858183362e+01)
_ERX = 8.45062911510467529297e-01


def _horner(coeffs, z):
    acc = coeffs[-1]
    for c in coeffs[-2::-1]:
        acc = acc * z + c
    return acc


def erf(xp, x):
    """The error function of ``x`` (an ``xp`` array), in ``x``'s float dtype: CuPy's kernel
    (``cupyx.scipy.special.erf``) on a device, the rational approximations on the host."""
    from . import cupyx_of
    cupyx = cupyx_of(xp)
    if cupyx is not None:
        return cupyx.scipy.special.erf(x)
    return erf_rational(xp, x)


def erf_rational(xp, x):
    """``erf`` from FreeBSD's piecewise rational approximations, written against ``xp``."""
    dtype = x.dtype
    x64 = x.astype('float64')
    a = xp.abs(x64)
    # |x| < 0.84375
    s = xp.minimum(a, 0.84375)
    z = s * s
    small = s + s * (_horner(_PP, z) / _horner(_QQ, z))
    # 0.84375 <= |x| < 1.25
    s = xp.clip(a, 0.84375, 1.25) - 1.0
    mid = _ERX + _horner(_PA, s) / _horner(_QA, s)
    # 1.25 <= |x| < 6: erf = 1 - exp(-x^2 - 0.5625 + R/S) / x
    t = xp.clip(a, 1.25, 6.0)
    w = 1.0 / (t * t)
    ra = _horner(_RA, w) / _horner(_SA, w)
    rb = _horner(_RB, w) / _horner(_SB, w)
    rs = xp.where(t < 1 / 0.35, ra, rb)
    large = 1.0 - xp.exp(-t * t - 0.5625 + rs) / t
    out = xp.where(a < 0.84375, small, xp.where(a < 1.25, mid, xp.where(a < 6.0, large, 1.0)))
    out = xp.where(x64 < 0, -out, out)
    out = xp.where(xp.isnan(x64), x64, out)
    return out.astype(dtype)
