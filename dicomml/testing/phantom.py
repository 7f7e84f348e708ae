"""Analytic 3-D anatomical phantoms evaluated at patient coordinates (LPS, mm).

The phantom is a function of position: every tissue is a region defined by closed-form
inequalities (ellipsoids, elliptic cylinders with smooth irregular boundaries, tubes, bands),
so any plane through it (axial, oblique, gantry-tilted, coronal localizer) shows the same
anatomy, and adjacent slices are consistent. :func:`render_labels` returns a tissue label map
(``uint8``); a lookup table turns labels into Hounsfield units (:data:`HU`) or MR signal
(:data:`T1`, :data:`T2`).

Coordinates follow the DICOM patient coordinate system (PS3.3 C.7.6.2.1.1): +x towards the
patient's left, +y posterior, +z head.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "Tissue", "HU", "T1", "T2", "BodyAnatomy", "HeadAnatomy", "Lesion",
    "random_anatomy", "render_labels", "plane_coordinates", "BODY_PARTS",
]

BODY_PARTS = ("abdomen", "chest", "head")


class Tissue:
    """Label values of :func:`render_labels` (``uint8``)."""

    AIR = 0
    FAT = 1
    MUSCLE = 2
    SKIN = 3
    LIVER = 4
    SPLEEN = 5
    KIDNEY = 6
    LUNG = 7
    BLOOD = 8
    CORTICAL = 9
    CANCELLOUS = 10
    CSF = 11
    GREY = 12
    WHITE = 13
    DISC = 14
    GAS = 15
    HEART = 16
    LESION = 17
    TABLE = 18
    N = 19


def _lut(values: dict[int, float]) -> np.ndarray:
    out = np.zeros(Tissue.N, np.float32)
    for k, v in values.items():
        out[k] = v
    return out


#: Hounsfield units of each tissue label.
HU = _lut({
    Tissue.AIR: -1000, Tissue.FAT: -100, Tissue.MUSCLE: 50, Tissue.SKIN: 30,
    Tissue.LIVER: 60, Tissue.SPLEEN: 45, Tissue.KIDNEY: 30, Tissue.LUNG: -850,
    Tissue.BLOOD: 40, Tissue.CORTICAL: 1000, Tissue.CANCELLOUS: 300, Tissue.CSF: 5,
    Tissue.GREY: 40, Tissue.WHITE: 30, Tissue.DISC: 80, Tissue.GAS: -900, Tissue.HEART: 40,
    Tissue.LESION: 75, Tissue.TABLE: 200,
})
#: T1-weighted-like MR signal (arbitrary units): fat and marrow bright, CSF dark, WM > GM.
T1 = _lut({
    Tissue.AIR: 0, Tissue.FAT: 1400, Tissue.MUSCLE: 500, Tissue.SKIN: 700,
    Tissue.LIVER: 650, Tissue.SPLEEN: 480, Tissue.KIDNEY: 520, Tissue.LUNG: 40,
    Tissue.BLOOD: 300, Tissue.CORTICAL: 30, Tissue.CANCELLOUS: 1100, Tissue.CSF: 150,
    Tissue.GREY: 550, Tissue.WHITE: 800, Tissue.DISC: 400, Tissue.GAS: 0, Tissue.HEART: 450,
    Tissue.LESION: 900, Tissue.TABLE: 0,
})
#: T2-weighted-like MR signal: CSF bright, WM < GM.
T2 = _lut({
    Tissue.AIR: 0, Tissue.FAT: 900, Tissue.MUSCLE: 300, Tissue.SKIN: 500,
    Tissue.LIVER: 250, Tissue.SPLEEN: 600, Tissue.KIDNEY: 700, Tissue.LUNG: 40,
    Tissue.BLOOD: 200, Tissue.CORTICAL: 30, Tissue.CANCELLOUS: 700, Tissue.CSF: 1800,
    Tissue.GREY: 800, Tissue.WHITE: 550, Tissue.DISC: 1000, Tissue.GAS: 0, Tissue.HEART: 500,
    Tissue.LESION: 400, Tissue.TABLE: 0,
})


@dataclass(frozen=True)
class Lesion:
    """A hyperdense blob (e.g. haemorrhage): an ellipsoid with an irregular boundary."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    harmonics: tuple[float, ...] = ()
    phases: tuple[float, ...] = ()


@dataclass(frozen=True)
class BodyAnatomy:
    """Random parameters of a trunk phantom (chest or abdomen)."""

    part: str
    a: float                      # half width (x), mm
    b: float                      # half depth (y), mm
    harmonics: tuple[float, ...]
    phases: tuple[float, ...]
    fat: float                    # subcutaneous fat thickness, mm
    shift: tuple[float, float]
    vessels: tuple[tuple[float, ...], ...] = ()
    rib_phase: float = 0.0
    disc_phase: float = 0.0


@dataclass(frozen=True)
class HeadAnatomy:
    """Random parameters of a head phantom."""

    a: float                      # half width (x), mm
    b: float                      # half depth (y), mm
    c: float                      # half height (z), mm
    cz: float                     # z of the centre
    harmonics: tuple[float, ...]
    phases: tuple[float, ...]
    skull: float                  # skull thickness, mm
    skin: float
    rotation: float               # in-plane rotation, radians
    shift: tuple[float, float]
    ventricle: float              # ventricle size scale
    gyri: tuple[float, ...] = ()
    gyri_phases: tuple[float, ...] = ()
    lesions: tuple[Lesion, ...] = field(default=())


def random_anatomy(part: str, rng: np.random.Generator) -> BodyAnatomy | HeadAnatomy:
    """Draw a phantom's parameters for ``part`` (``"abdomen"``, ``"chest"`` or ``"head"``)."""
    if part == "head":
        k = 6
        return HeadAnatomy(
            a=float(rng.uniform(66, 78)), b=float(rng.uniform(84, 98)),
            c=float(rng.uniform(95, 110)), cz=float(rng.uniform(-20, -5)),
            harmonics=tuple(float(v) for v in rng.normal(0, 0.018, k) / np.arange(1, k + 1) ** 0.5),
            phases=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, k)),
            skull=float(rng.uniform(5.0, 9.0)), skin=float(rng.uniform(3.0, 5.0)),
            rotation=float(rng.uniform(-0.25, 0.25)),
            shift=(float(rng.uniform(-8, 8)), float(rng.uniform(-8, 8))),
            ventricle=float(rng.uniform(0.7, 1.4)),
            gyri=tuple(float(v) for v in rng.uniform(0.01, 0.03, 4)),
            gyri_phases=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 4)),
        )
    if part not in ("abdomen", "chest"):
        from dicomml.errors import ConfigError
        raise ConfigError(f"unknown body part {part!r}; expected one of {BODY_PARTS}. "
                          f"Received: body={part!r}")
    k = 6
    vessels = []
    if part == "chest":
        for side in (-1, 1):
            for _ in range(14):
                vessels.append((side * float(rng.uniform(25, 95)), float(rng.uniform(-50, 60)),
                                float(rng.uniform(-0.6, 0.6)), float(rng.uniform(-0.6, 0.6)),
                                float(rng.uniform(1.0, 3.5))))
    return BodyAnatomy(
        part=part, a=float(rng.uniform(150, 175)), b=float(rng.uniform(105, 125)),
        harmonics=tuple(float(v) for v in rng.normal(0, 0.02, k) / np.arange(1, k + 1) ** 0.5),
        phases=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, k)),
        fat=float(rng.uniform(8, 25)),
        shift=(float(rng.uniform(-5, 5)), float(rng.uniform(-5, 5))),
        vessels=tuple(vessels), rib_phase=float(rng.uniform(0, 30)),
        disc_phase=float(rng.uniform(0, 30)),
    )


def plane_coordinates(origin, row_dir, col_dir, rows: int, columns: int,
                      row_spacing: float, col_spacing: float):
    """Patient coordinates of every pixel centre of one plane.

    Pixel (r, c) lies at ``origin + c * col_spacing * row_dir + r * row_spacing * col_dir``
    (PS3.3 C.7.6.2.1.1), where ``row_dir`` is the first three values of (0020,0037) Image
    Orientation (Patient) and ``col_dir`` the last three. Returns ``(X, Y, Z)`` as
    ``float32`` arrays of shape (rows, columns); a coordinate that is constant over the plane
    is returned as a 0-d array so that evaluation broadcasts cheaply.
    """
    o = np.asarray(origin, np.float64)
    rd = np.asarray(row_dir, np.float64)
    cd = np.asarray(col_dir, np.float64)
    jj = (np.arange(columns, dtype=np.float64) * col_spacing)[None, :]
    ii = (np.arange(rows, dtype=np.float64) * row_spacing)[:, None]
    out = []
    for k in range(3):
        if rd[k] == 0 and cd[k] == 0:
            out.append(np.asarray(o[k], np.float32))
        else:
            out.append((o[k] + jj * rd[k] + ii * cd[k]).astype(np.float32))
    shape = (rows, columns)
    # X and Y must be full grids for the region tests below.
    return tuple(np.broadcast_to(v, shape) if k < 2 else v for k, v in enumerate(out))


_N_ANGLES = 8192


def _radius_factor(theta, harmonics, phases, orders=None, base=1.0):
    """``base + sum_k h_k cos(n_k theta + p_k)`` (n_k = 2, 3, ... unless ``orders``).

    With scalar phases the sum is tabulated over 8192 angles and looked up (a fraction of
    the cost of evaluating the cosines per pixel; the angular error is below 0.001 rad).
    """
    orders = list(orders) if orders is not None else list(range(2, 2 + len(harmonics)))
    if all(np.ndim(p) == 0 for p in phases):
        t = np.linspace(-np.pi, np.pi, _N_ANGLES + 1)
        table = np.full(t.shape, base, np.float64)
        for n, h, p in zip(orders, harmonics, phases):
            table += h * np.cos(n * t + p)
        idx = np.rint((theta + np.float32(np.pi)) * np.float32(_N_ANGLES / (2 * np.pi)))
        return table.astype(np.float32)[idx.astype(np.intp)]
    r = base
    for n, h, p in zip(orders, harmonics, phases):
        r = r + h * np.cos(n * theta + p)
    return r


def _ellipsoid(X, Y, Z, c, r):
    return (((X - c[0]) / r[0]) ** 2 + ((Y - c[1]) / r[1]) ** 2 + ((Z - c[2]) / r[2]) ** 2) < 1.0


class _Painter:
    """Paint labels into a plane, evaluating each region only within its bounding box."""

    def __init__(self, X, Y, Z, labels):
        self.X, self.Y, self.Z, self.labels = X, Y, np.broadcast_to(Z, X.shape), labels
        self.zconst = Z.ndim == 0

    def box(self, lo, hi):
        """Index slices of the pixels whose (x, y, z) may fall in the box [lo, hi]."""
        m = ((self.X >= lo[0]) & (self.X <= hi[0]) & (self.Y >= lo[1]) & (self.Y <= hi[1]))
        if not self.zconst:
            m &= (self.Z >= lo[2]) & (self.Z <= hi[2])
        elif not (lo[2] <= float(self.Z.flat[0]) <= hi[2]):
            return None
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size == 0:
            return None
        cols = np.flatnonzero(m[rows[0]:rows[-1] + 1].any(axis=0))
        return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)

    def ellipsoid(self, c, r, label, where=None):
        lo = [c[k] - r[k] for k in range(3)]
        hi = [c[k] + r[k] for k in range(3)]
        s = self.box(lo, hi)
        if s is None:
            return
        m = _ellipsoid(self.X[s], self.Y[s], self.Z[s], c, r)
        if where is not None:
            m &= np.isin(self.labels[s], where)
        self.labels[s][m] = label


def render_labels(X, Y, Z, anatomy: BodyAnatomy | HeadAnatomy) -> np.ndarray:
    """Tissue labels (:class:`Tissue`, ``uint8``) at the patient coordinates ``X, Y, Z``.

    ``X`` and ``Y`` are arrays of one shape (rows, columns); ``Z`` is of the same shape or
    a scalar (axial planes).
    """
    X = np.asarray(X, np.float32)
    Y = np.asarray(Y, np.float32)
    Z = np.asarray(Z, np.float32)
    if isinstance(anatomy, HeadAnatomy):
        return _render_head(X, Y, Z, anatomy)
    return _render_body(X, Y, Z, anatomy)


def _render_head(X, Y, Z, a: HeadAnatomy) -> np.ndarray:
    labels = np.zeros(X.shape, np.uint8)
    cr, sr = np.cos(a.rotation), np.sin(a.rotation)
    x0 = X - a.shift[0]
    y0 = Y - a.shift[1]
    x = (cr * x0 + sr * y0)
    y = (-sr * x0 + cr * y0)
    z = Z - a.cz
    theta = np.arctan2(y, x)
    rf = _radius_factor(theta, a.harmonics, a.phases)
    # Normalized 3-D radius: the head is a deformed ellipsoid; distance in mm ~ (1 - s) * R.
    zz = np.broadcast_to((z / a.c) ** 2, x.shape)
    rho2 = (x / a.a) ** 2 + (y / a.b) ** 2
    s = np.sqrt(rho2 + zz) / rf
    # Below the skull base (z < -0.45 c), the head continues as a neck cylinder.
    neck = (z < -0.45 * a.c)
    if np.any(neck):
        sn = np.sqrt((x / (0.62 * a.a)) ** 2 + (y / (0.62 * a.b)) ** 2) / rf
        s = np.where(neck, np.minimum(s, sn), s)
    R = 0.5 * (a.a + a.b)
    t_skin = a.skin / R
    t_skull = a.skull / R
    t_csf = 2.0 / R
    labels[s < 1.0] = Tissue.SKIN
    labels[s < 1.0 - 0.4 * t_skin] = Tissue.FAT
    labels[s < 1.0 - t_skin] = Tissue.CORTICAL
    inner_table = 1.0 - t_skin - t_skull
    dip = (s < 1.0 - t_skin - 0.3 * t_skull) & (s >= 1.0 - t_skin - 0.7 * t_skull)
    labels[dip] = Tissue.CANCELLOUS
    labels[s < inner_table] = Tissue.CSF
    brain = s < inner_table - t_csf
    labels[brain] = Tissue.GREY
    # White matter: an inner deformed ellipsoid with gyral-like boundary ripples.
    g = _radius_factor(theta, a.gyri, a.gyri_phases, orders=[7 + 3 * k for k in
                                                             range(len(a.gyri))], base=0.78)
    labels[brain & (s < (inner_table - t_csf) * g)] = Tissue.WHITE
    if np.any(neck):
        labels[neck & (s < 1.0 - t_skin)] = Tissue.MUSCLE
        p = _Painter(x, y, z, labels)
        p.ellipsoid((0.0, 0.25 * a.b, -0.7 * a.c), (14, 12, 0.4 * a.c), Tissue.CANCELLOUS)
    # Ventricles: two lateral ventricles and a third, CSF.
    p = _Painter(x, y, z, labels)
    v = a.ventricle
    for side in (-1, 1):
        p.ellipsoid((side * 8.0 * v, -8.0, 10.0), (6.0 * v, 28.0 * v, 12.0 * v), Tissue.CSF,
                    where=(Tissue.WHITE, Tissue.GREY))
    p.ellipsoid((0.0, 8.0, -2.0), (2.0 * v, 10.0 * v, 8.0), Tissue.CSF,
                where=(Tissue.WHITE, Tissue.GREY))
    for les in a.lesions:
        _paint_lesion(x, y, z, labels, les)
    return labels


def _paint_lesion(x, y, z, labels, les: Lesion) -> None:
    p = _Painter(x, y, z, labels)
    c, r = les.center, les.radii
    scale = 1.0 + sum(abs(h) for h in les.harmonics)
    box = p.box([c[k] - r[k] * scale for k in range(3)], [c[k] + r[k] * scale for k in range(3)])
    if box is None:
        return
    xs = x[box] - c[0]
    ys = y[box] - c[1]
    zs = np.broadcast_to(z, x.shape)[box] - c[2]
    th = np.arctan2(ys, xs)
    f = _radius_factor(th, les.harmonics, les.phases)
    s = np.sqrt((xs / r[0]) ** 2 + (ys / r[1]) ** 2 + (zs / r[2]) ** 2) / f
    m = (s < 1.0) & np.isin(labels[box], (Tissue.GREY, Tissue.WHITE))
    labels[box][m] = Tissue.LESION


def _render_body(X, Y, Z, a: BodyAnatomy) -> np.ndarray:
    labels = np.zeros(X.shape, np.uint8)
    x = X - a.shift[0]
    y = Y - a.shift[1]
    z = Z
    zb = np.broadcast_to(z, x.shape)
    theta = np.arctan2(y, x)
    # Boundary harmonics drift slowly along z so the outline changes from slice to slice.
    drift = np.sin(z / 90.0) * 0.5
    ph = tuple(p + drift for p in a.phases)
    rf = _radius_factor(theta, a.harmonics, ph)
    # Flatter back: posterior half slightly less deep.
    b = np.where(y > 0, a.b * 0.92, a.b)
    # Above the shoulders (z > 170 mm) the trunk narrows smoothly into the neck.
    taper = 1.0 - 0.6 * np.clip((z - 170.0) / 60.0, 0.0, 1.0) ** 2
    taper_b = 1.0 - 0.35 * np.clip((z - 170.0) / 60.0, 0.0, 1.0) ** 2
    s = np.sqrt((x / (a.a * taper)) ** 2 + (y / (b * taper_b)) ** 2) / rf
    R = 0.5 * (a.a + a.b)
    labels[s < 1.0] = Tissue.SKIN
    labels[s < 1.0 - 2.0 / R] = Tissue.FAT
    muscle = s < 1.0 - a.fat / R
    labels[muscle] = Tissue.MUSCLE
    inner = s < 1.0 - (a.fat + 12.0) / R
    labels[inner] = Tissue.FAT           # visceral fat
    # Patient table under the back (+y), outside the body.
    tb = (Y > a.b + a.shift[1] + 15) & (Y < a.b + a.shift[1] + 22) & (np.abs(X) < 220)
    labels[tb & (labels == Tissue.AIR)] = Tissue.TABLE
    p = _Painter(x, y, z, labels)
    inner_labels = (Tissue.FAT,)
    if a.part == "chest":
        lung_h = (0.55 * a.a, 0.72 * a.b, 140.0)
        for side in (-1, 1):
            p.ellipsoid((side * 0.45 * a.a, 0.02 * a.b, 20.0), lung_h, Tissue.LUNG,
                        where=inner_labels)
        p.ellipsoid((0.15 * a.a, -0.25 * a.b, -10.0), (0.32 * a.a, 0.42 * a.b, 70.0),
                    Tissue.HEART, where=(Tissue.FAT, Tissue.LUNG))
        p.ellipsoid((-0.05 * a.a, 0.35 * a.b, 0.0), (14, 14, 400), Tissue.BLOOD)   # aorta
        p.ellipsoid((-0.02 * a.a, -0.9 * a.b, 0.0), (12, 5, 400), Tissue.CORTICAL,
                    where=(Tissue.MUSCLE, Tissue.FAT))                               # sternum
        # Upper abdomen below the diaphragm: liver dome and stomach gas.
        p.ellipsoid((-0.4 * a.a, -0.05 * a.b, -200.0), (0.45 * a.a, 0.65 * a.b, 110.0),
                    Tissue.LIVER, where=inner_labels)
        p.ellipsoid((0.35 * a.a, -0.2 * a.b, -150.0), (30, 25, 25), Tissue.GAS,
                    where=inner_labels)
        _vessels(x, y, zb, labels, a.vessels)
        _ribs(x, y, zb, s, theta, labels, R, a)
    else:
        p.ellipsoid((-0.45 * a.a, -0.1 * a.b, 40.0), (0.42 * a.a, 0.62 * a.b, 110.0),
                    Tissue.LIVER, where=inner_labels)
        p.ellipsoid((0.55 * a.a, 0.3 * a.b, 60.0), (0.18 * a.a, 0.3 * a.b, 60.0),
                    Tissue.SPLEEN, where=inner_labels)
        for side in (-1, 1):
            p.ellipsoid((side * 0.42 * a.a, 0.5 * a.b, -30.0), (28, 22, 60), Tissue.KIDNEY,
                        where=inner_labels)
        p.ellipsoid((0.05 * a.a, 0.3 * a.b, 0.0), (11, 11, 400), Tissue.BLOOD)   # aorta
        p.ellipsoid((0.0, -0.3 * a.b, -60.0), (0.4 * a.a, 0.2 * a.b, 60.0), Tissue.MUSCLE,
                    where=inner_labels)                                           # bowel
        p.ellipsoid((0.3 * a.a, -0.45 * a.b, -40.0), (20, 14, 30), Tissue.GAS,
                    where=(Tissue.MUSCLE,))
    _spine(x, y, zb, labels, a)
    return labels


def _vessels(x, y, z, labels, vessels) -> None:
    lung = labels == Tissue.LUNG
    if not lung.any():
        return
    rows = np.flatnonzero(lung.any(axis=1))
    cols = np.flatnonzero(lung.any(axis=0))
    s = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    xs, ys, zs, ls = x[s], y[s], z[s], lung[s]
    sub = labels[s]
    for x0, y0, sx, sy, r in vessels:
        d2 = (xs - (x0 + sx * zs)) ** 2 + (ys - (y0 + sy * zs)) ** 2
        sub[(d2 < r * r) & ls] = Tissue.BLOOD


def _ribs(x, y, z, s, theta, labels, R, a: BodyAnatomy) -> None:
    # Ribs: bands of bone in a ring just inside the muscle wall; they run obliquely
    # (lower anteriorly), so an axial plane cuts them into arcs and ovals.
    ring = (s < 1.0 - (a.fat + 2.0) / R) & (s > 1.0 - (a.fat + 13.0) / R)
    if not ring.any():
        return
    ang = np.abs(np.abs(theta) - np.pi / 2)       # 0 at the back/front midline
    posterior = y > 0
    slope = np.where(posterior, 18.0, 45.0)
    u = np.mod(z - a.rib_phase + slope * (np.pi / 2 - ang) / (np.pi / 2), 30.0)
    band = (u < 9.0) & ring & (ang < np.pi / 2 - 0.25)
    core = band & (u > 2.0) & (u < 7.0) & (s < 1.0 - (a.fat + 4.5) / R) & \
        (s > 1.0 - (a.fat + 10.5) / R)
    labels[band] = Tissue.CORTICAL
    labels[core] = Tissue.CANCELLOUS


def _spine(x, y, z, labels, a: BodyAnatomy) -> None:
    cy = 0.55 * a.b
    rows = np.flatnonzero(((np.abs(x) < 45) & (y > cy - 30) & (y < cy + 60)).any(axis=1))
    if rows.size == 0:
        return
    cols = np.flatnonzero(((np.abs(x) < 45) & (y > cy - 30) & (y < cy + 60))[rows].any(axis=0))
    s = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    xs, ys, zs = x[s], y[s], z[s]
    sub = labels[s]
    body = ((xs / 22.0) ** 2 + ((ys - cy) / 17.0) ** 2) < 1.0
    core = ((xs / 19.5) ** 2 + ((ys - cy) / 14.5) ** 2) < 1.0
    disc = np.mod(zs - a.disc_phase, 30.0) < 6.0
    canal = ((xs / 9.0) ** 2 + ((ys - cy - 27.0) / 8.0) ** 2) < 1.0
    arch = ((xs / 15.0) ** 2 + ((ys - cy - 29.0) / 13.0) ** 2) < 1.0
    spinous = (np.abs(xs) < 4.0) & (ys > cy + 38.0) & (ys < cy + 58.0)
    sub[(arch | spinous) & ~disc] = Tissue.CORTICAL
    sub[body] = Tissue.CORTICAL
    sub[core] = Tissue.CANCELLOUS
    sub[body & disc] = Tissue.DISC
    sub[canal] = Tissue.CSF
