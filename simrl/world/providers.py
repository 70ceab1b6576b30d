"""Name providers for fictional worlds, built on faker's provider data.

One :class:`faker.Faker` instance per world, seeded with ``seed_instance`` (never the global
``random``); names are drawn from that instance's providers (people, places, companies, words) with
its own ``random``. Drawing from the provider tables in bulk is ~50x faster than calling
``fake.name()`` per entity, which matters for 100k-entity worlds.

Every name is unique within a world (:class:`NameRegistry`), and no entity is named after a real
country (faker's own list of country names is the blocklist).
"""

from __future__ import annotations

import itertools
import random

from faker import Faker
from faker.providers.address.en import Provider as _EnAddress
from faker.providers.lorem.en_US import Provider as _Lorem

REAL_COUNTRIES = frozenset(c.lower() for c in _EnAddress.countries) | frozenset(
    {"usa", "uk", "america", "england", "scotland", "wales", "russia", "korea", "holland", "burma"})
"""Lower-cased names of real countries that no entity may take."""

_SYLLABLES_A = ("val", "mor", "ka", "sel", "dra", "tor", "e", "lu", "ar", "bel", "cas", "dun", "fen",
                "gal", "hal", "is", "jor", "kel", "lan", "mir", "nor", "or", "pel", "quen", "ros", "sar",
                "tal", "ul", "ven", "wyn", "yr", "zan", "ost", "bran", "cor", "del")
_SYLLABLES_B = ("do", "ren", "ma", "li", "the", "va", "ni", "ga", "ro", "se", "ta", "ve", "da", "lo",
                "mi", "ra", "ne", "ka", "zo", "bi", "")
_SYLLABLES_C = ("ria", "nia", "land", "stan", "mar", "dor", "via", "gard", "esh", "onia", "ath", "ica",
                "ene", "is", "ora", "und")
_PRODUCT_NOUNS = ("Vortex", "Pulse", "Harbor", "Beacon", "Summit", "Atlas", "Prism", "Nimbus", "Forge",
                  "Quill", "Lantern", "Compass", "Orbit", "Cascade", "Ember", "Meridian", "Sparrow",
                  "Keystone", "Tundra", "Halcyon", "Monarch", "Drift", "Relay", "Vessel", "Canopy")
_EVENT_KINDS = ("Summit", "Festival", "Expo", "Congress", "Symposium", "Fair", "Forum", "Games",
                "Biennale", "Conference")
_WORK_NOUNS = ("River", "Garden", "Winter", "Lighthouse", "Mirror", "Orchard", "Letters", "Harvest",
               "Silence", "Voyage", "Archive", "Empire", "Tide", "Crown", "Shadow", "Meadow", "Frontier")
_WORK_ADJS = ("Silent", "Last", "Hidden", "Golden", "Broken", "Distant", "Burning", "Quiet", "Endless",
              "Crimson", "Forgotten", "Northern", "Paper", "Glass", "Wandering")


class NameRegistry:
    """Keeps names unique within a world (case-insensitive) and off the real-country list."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def claim(self, name: str) -> bool:
        """Reserve ``name``; False if it is taken or is a real country's name."""
        key = name.lower()
        if key in self._used or key in REAL_COUNTRIES:
            return False
        self._used.add(key)
        return True


def _weighted_table(table) -> tuple[list[str], list[float] | None]:
    if isinstance(table, dict):
        return list(table.keys()), list(table.values())
    return list(table), None


class WorldNames:
    """Draws unique fictional names for each entity type from one seeded faker instance.

    Args:
        seed: the world seed; the faker instance is seeded with it via ``seed_instance``.
        locale: faker locale for people's names (e.g. ``en_US``, ``de_DE``).
    """

    def __init__(self, seed: int, locale: str = "en_US") -> None:
        self.fake = Faker(locale)
        self.fake.seed_instance(seed)
        self.rng: random.Random = self.fake.random
        person = self.fake.first_name.__self__
        self._first, self._first_w = _weighted_table(person.first_names)
        self._last, self._last_w = _weighted_table(person.last_names)
        address = Faker("en_US").city_prefix.__self__
        self._city_prefixes = list(address.city_prefixes)
        self._city_suffixes = list(address.city_suffixes)
        self._company_suffixes = ("Inc", "Group", "Ltd", "LLC", "PLC", "and Sons", "Holdings", "Works")
        self._words = [w.capitalize() for w in _Lorem.word_list if len(w) > 3]
        self.registry = NameRegistry()

    def _unique(self, draw, fallback) -> str:
        for _ in range(8):
            name = draw()
            if self.registry.claim(name):
                return name
        for i in itertools.count(2):
            name = fallback(i)
            if self.registry.claim(name):
                return name
        raise AssertionError("unreachable")

    def people(self, n: int) -> list[str]:
        """``n`` unique person names ("First Last"; a middle initial or suffix on collision)."""
        firsts = self.rng.choices(self._first, self._first_w, k=n)
        lasts = self.rng.choices(self._last, self._last_w, k=n)
        out = []
        for first, last in zip(firsts, lasts):
            initial = chr(ord("A") + self.rng.randrange(26))
            out.append(self._unique(
                lambda f=first, la=last: f"{f} {la}" if self.rng.random() < 0.9
                else f"{f} {self.rng.choice(self._last)}",
                lambda i, f=first, la=last, m=initial: f"{f} {m}. {la}" if i == 2 else f"{f} {m}. {la} {_roman(i)}"))
        return out

    def countries(self, n: int) -> list[str]:
        """``n`` unique invented country names built from syllables (never a real country)."""
        def draw() -> str:
            return (self.rng.choice(_SYLLABLES_A) + self.rng.choice(_SYLLABLES_B)
                    + self.rng.choice(_SYLLABLES_C)).capitalize()
        return [self._unique(draw, lambda i: f"{draw()} {_roman(i)}") for _ in range(n)]

    def cities(self, n: int) -> list[str]:
        """``n`` unique city names in faker's style (``Port Jessicaburgh``, ``Lake Harristown``)."""
        def draw() -> str:
            root = self.rng.choice(self._first if self.rng.random() < 0.5 else self._last)
            name = root + self.rng.choice(self._city_suffixes)
            return f"{self.rng.choice(self._city_prefixes)} {name}" if self.rng.random() < 0.4 else name
        return [self._unique(draw, lambda i: f"{draw()} {self.rng.choice(('Falls', 'Heights', 'Springs'))}")
                for _ in range(n)]

    def organizations(self, n: int) -> list[str]:
        """``n`` unique company names in faker's formats (``Harris Group``, ``Lee-Ortiz Ltd``)."""
        def draw() -> str:
            r = self.rng.random()
            a, b = self.rng.choice(self._last), self.rng.choice(self._last)
            if r < 0.45:
                return f"{a} {self.rng.choice(self._company_suffixes)}"
            if r < 0.8:
                return f"{a}-{b} {self.rng.choice(self._company_suffixes)}"
            return f"{a}, {b} and {self.rng.choice(self._last)}"
        return [self._unique(draw, lambda i: f"{draw()} {i}") for _ in range(n)]

    def products(self, n: int) -> list[str]:
        """``n`` unique product names (``Aquamarine Vortex 3``)."""
        def draw() -> str:
            word = self.rng.choice(self._words)
            return f"{word} {self.rng.choice(_PRODUCT_NOUNS)} {self.rng.randrange(1, 20)}"
        return [self._unique(draw, lambda i: f"{draw()}{chr(64 + i % 26)}") for _ in range(n)]

    def events(self, years: list[int]) -> list[str]:
        """One unique event name per year given (``Harbor Film Festival 1998``).

        Names never contain a city's name, so asking where an event was held does not give the answer away.
        """
        out = []
        for year in years:
            def draw(y=year) -> str:
                return f"{self.rng.choice(self._words)} {self.rng.choice(_EVENT_KINDS)} {y}"
            out.append(self._unique(draw, lambda i, y=year: f"{draw()} {_roman(i)}"))
        return out

    def titles(self, n: int) -> list[str]:
        """``n`` unique titles of creative works (``The Hidden Orchard``, ``Letters of Winter``)."""
        def draw() -> str:
            r = self.rng.random()
            noun, adj = self.rng.choice(_WORK_NOUNS), self.rng.choice(_WORK_ADJS)
            if r < 0.4:
                return f"The {adj} {noun}"
            if r < 0.7:
                return f"{noun} of {self.rng.choice(self._words)}"
            return f"{adj} {self.rng.choice(self._words)}"
        return [self._unique(draw, lambda i: f"{draw()} {_roman(i)}") for _ in range(n)]


def _roman(i: int) -> str:
    numerals = ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I"))
    out = ""
    for value, sym in numerals:
        while i >= value:
            out += sym
            i -= value
    return out


def _ordinal(i: int) -> str:
    return f"{i}{'th' if 10 <= i % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(i % 10, 'th')}"
