"""Where the simulated stations stand: names, coordinates and whether the public sees them (pure).

The fleet sits in Shenzhen and the Pearl River delta: ``basin-a`` is the Shenzhen River
(深圳河), ``basin-b`` the Maozhou River (茅洲河). Names carry Chinese and English (they pass the
registry's TagText rules: no control characters). Air, water and hydrological stations are
public except ``air-003``, registered hidden so tests can check that hidden stations never
appear; cold-chain loggers are never public.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HIDDEN", "PLACES", "Place", "place_of"]


@dataclass(frozen=True, slots=True)
class Place:
    """A station's readable name and WGS 84 position."""

    name: str
    lat: float
    lon: float


PLACES: dict[str, Place] = {
    "air-001": Place("福田 Futian", 22.5410, 114.0540),
    "air-002": Place("南山 Nanshan", 22.5330, 113.9300),
    "air-003": Place("龙岗 Longgang (internal)", 22.7200, 114.2470),
    "air-hj-001": Place("宝安 Bao'an", 22.5550, 113.8830),
    "air-dtu-001": Place("盐田 Yantian", 22.5560, 114.2370),
    "air-senml-001": Place("华侨城 OCT (low-cost sensor)", 22.5390, 113.9860),
    "water-001": Place("深圳河 罗湖断面 Shenzhen River, Luohu", 22.5320, 114.1130),
    "water-002": Place("茅洲河 共和村 Maozhou River, Gonghe", 22.7360, 113.8170),
    "water-hj-001": Place("茅洲河 燕川 Maozhou River, Yanchuan", 22.7610, 113.8590),
    "rain-001": Place("梧桐山 雨量站 Wutong Mountain rain gauge", 22.5820, 114.2010),
    "rain-002": Place("石岩 雨量站 Shiyan rain gauge", 22.6790, 113.9320),
    "river-001": Place("深圳河 渔农村 Shenzhen River, Yunong", 22.5240, 114.0860),
    "river-002": Place("茅洲河 洋涌 Maozhou River, Yangyong", 22.7480, 113.8340),
    "rtu-001": Place("布吉河 水文站 Buji River hydrological station", 22.5600, 114.1180),
    "cold-001": Place("冷库 1 Cold store 1 (fridge)", 22.5640, 114.0230),
    "cold-002": Place("冷藏车 Reefer truck 2 (fridge)", 22.6010, 114.0580),
    "cold-003": Place("冷冻库 Freezer 3", 22.6250, 113.9900),
}
HIDDEN = frozenset({"air-003"})


def place_of(device_id: str, index: int = 0) -> Place:
    """The place of a device of the default fleet; others get a spot on a grid near Futian."""
    known = PLACES.get(device_id)
    if known is not None:
        return known
    row, col = divmod(index, 20)
    return Place(f"Simulated station {device_id}", 22.45 + 0.01 * row, 113.85 + 0.02 * col)
