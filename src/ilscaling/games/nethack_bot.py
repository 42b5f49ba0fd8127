"""A heuristic NetHack bot (the NetHack expert) and the recorder of its games as NLE ttyrecs.

The bot plays a human monk from what NLE shows: the glyph map, blstats, the message line, the
inventory and the three prompt flags of `misc` (y/n question, text line, --More--). Each step it
takes the first rule that applies:

  1. answer the game: --More-- (Enter), menus (ESC), y/n questions (from what it asked for, else
     no), text lines (ESC, or the Elbereth it is engraving);
  2. finish a multi-key command it started (a counted search such as `15s`);
  3. when engulfed, hit the engulfer;
  4. survive: pray when stoned/slimed/strangled/ill, or when HP, hunger or lycanthropy is
     critical and the prayer timeout has likely run out; else, hurt and in melee, drink a
     potion of healing or engrave Elbereth and rest on it;
  5. fight: melee an adjacent hostile, never a floating eye, cockatrice, mold or jelly
     (passive attacks kill a bare-handed monk), a gas spore only with HP to spare, never a
     peaceful (it answers "Really attack?" with no and leaves that monster alone a while), an
     unseen one ("I") only while it hurts us. Walled in by one it must not melee, it hits molds
     and jellies when HP allows and scares the rest with Elbereth (a floating eye is hit only
     after a long wait, at full health);
  6. blind, confused or stunned: wait for it to pass (short searches), only hitting back;
  7. chase a reachable hostile a few squares away (better than being hit while searching);
  8. eat from the inventory when Hungry; rest (a counted search) when hurt and alone;
  9. move: descend when the level is explored (or its step budget is spent), else walk by BFS
     to the nearest frontier (a cell not yet stood on that touches unexplored rock, or whose
     floor was only ever seen under objects: they may hide the stairs), kicking locked doors
     that lead somewhere (main dungeon only: Minetown's watch minds); shops are left alone.
     When nothing is left and no stairs are known, search for hidden doors and corridors in
     bounded bursts at chosen spots.

Searching is what a bot does when it has nothing better; left unchecked it is most of the
labels, and behaviour cloning then learns to search. Here a search is a counted burst (`15s`:
three keys for fifteen turns), only once exploration has stalled, at one spot at a time chosen
for the unexplored map around it, each spot at most `search_cap` turns per round.

`record_bot_games` plays games in worker processes, each game recorded into its own folder
(`out_dir/<game>/`, the layout `nle.dataset.add_nledata_directory` reads), and writes a data
card. In a seeded environment a game depends only on the study seed and its index.
"""

from __future__ import annotations

import collections
import multiprocessing as mp
import re
import time
from pathlib import Path

import numpy as np
from nle import nethack

from ilscaling.data.nethack import KEY_TO_ACTION
from ilscaling.games import nethack as nh

# What the bot reads; the terminal and blstats come with every environment of make_env.
BOT_OBSERVATION_KEYS = ("glyphs", "blstats", "message", "misc", "inv_letters", "inv_oclasses", "inv_strs",
                        "tty_chars", "tty_colors", "tty_cursor")

ROWS, COLS = nethack.DUNGEON_SHAPE  # 21 x 79 map cells
ACTION_NAMES = [a.name for a in nethack.ACTIONS]
# Raw key -> action index: the dataset's rule (three keys are bound to two actions; the lower index wins).
KEY_INDEX = {key: int(index) for key, index in enumerate(KEY_TO_ACTION) if index >= 0}

ESC, MORE = 27, ord("\r")
KICK, PRAY = nethack.C("d"), nethack.M("p")
# Directions: key, dy, dx. Orthogonal first so ties prefer moves that doors allow.
DIRECTIONS = [("k", -1, 0), ("j", 1, 0), ("h", 0, -1), ("l", 0, 1),
              ("y", -1, -1), ("u", -1, 1), ("b", 1, -1), ("n", 1, 1)]

# ---------------------------------------------------------------------------------------- glyphs

# Terrain classes the bot remembers per map cell.
UNKNOWN, WALL, FLOOR, CORRIDOR, DOORWAY, DOOR, TRAP, DOWNSTAIRS = range(8)
PASSABLE = (FLOOR, CORRIDOR, DOORWAY, DOOR, DOWNSTAIRS)


def _cmap_terrain(cmap: int) -> int:
    """The terrain class of NetHack's map symbol number `cmap` (defsym.h order, NetHack 3.6)."""
    if cmap == 0:
        return UNKNOWN  # unexplored stone (also dark, unremembered floor)
    if 1 <= cmap <= 11 or cmap in (17, 18, 32, 34, 37, 38, 41):
        return WALL  # walls, iron bars, trees, water, lava, raised drawbridges: impassable
    if cmap in (13, 14, 15, 16):
        return DOOR  # open or closed door: entered and left orthogonally only
    if cmap == 12:
        return DOORWAY  # no door, or a broken one: diagonal moves allowed
    if cmap in (21, 22):
        return CORRIDOR
    if cmap in (24, 26):
        return DOWNSTAIRS  # staircase or ladder down
    if 42 <= cmap <= 63:
        return TRAP
    if cmap <= 41 or cmap == 64:
        return FLOOR  # room floor, stairs up, altar, fountain, ...
    return -1  # explosions, zaps, etc.: transient, keep what was remembered


def _glyph_tables():
    """Per-glyph lookup tables, so that reading the map is a few numpy indexing operations."""
    glyphs = np.arange(nethack.MAX_GLYPH)
    terrain = np.full(nethack.MAX_GLYPH, -1, dtype=np.int8)
    monster = np.full(nethack.MAX_GLYPH, -1, dtype=np.int16)
    pet = np.zeros(nethack.MAX_GLYPH, dtype=bool)
    closed_door = np.zeros(nethack.MAX_GLYPH, dtype=bool)
    for g in glyphs:
        g = int(g)
        if nethack.glyph_is_cmap(g):
            cmap = nethack.glyph_to_cmap(g)
            terrain[g] = _cmap_terrain(cmap)
            closed_door[g] = cmap in (15, 16)
        elif nethack.glyph_is_monster(g):  # normal, pet, detected or ridden
            monster[g] = nethack.glyph_to_mon(g)
            pet[g] = nethack.glyph_is_pet(g)
        elif g == nethack.GLYPH_INVISIBLE:
            monster[g] = nethack.NUMMONS  # "remembered, unseen monster": attacking it is fine
    swallow = np.array([nethack.glyph_is_swallow(int(g)) for g in glyphs])
    boulder = nethack.GLYPH_OBJ_OFF + next(i for i in range(nethack.NUM_OBJECTS)
                                           if nethack.OBJ_NAME(nethack.objclass(i)) == "boulder")
    return terrain, monster, pet, closed_door, swallow, boulder


GLYPH_TERRAIN, GLYPH_MONSTER, GLYPH_PET, GLYPH_CLOSED_DOOR, GLYPH_SWALLOW, BOULDER_GLYPH = _glyph_tables()

_MONSTER_NAMES = [nethack.permonst(i).mname for i in range(nethack.NUMMONS)]
# Never melee these bare-handed: passive attacks (stoning, paralysis, acid, cold, fire,
# explosion, sliming) kill or cripple a low-level monk.
NEVER_MELEE = frozenset(_MONSTER_NAMES.index(name) for name in (
    "floating eye", "cockatrice", "chickatrice", "brown mold", "yellow mold", "green mold",
    "red mold", "blue jelly", "spotted jelly", "ochre jelly", "green slime", "Medusa"))
FLOATING_EYE = _MONSTER_NAMES.index("floating eye")
# ... except these, when one walls the bot in and it has more HP than the passive attack
# (cold, acid, fire, stinging spores) can take: molds and jellies never move out of the way.
MELEE_WHEN_WALLED_IN = {_MONSTER_NAMES.index(name): hp for name, hp in (
    ("brown mold", 30), ("green mold", 30), ("yellow mold", 15), ("red mold", 15),
    ("blue jelly", 30), ("spotted jelly", 25), ("ochre jelly", 30))}

GLYPH_NEVER_MELEE = np.isin(GLYPH_MONSTER, list(NEVER_MELEE))
# A gas spore explodes for 4d6 when killed: melee it only with more HP than that.
GLYPH_GAS_SPORE = GLYPH_MONSTER == _MONSTER_NAMES.index("gas spore")
GAS_SPORE_SAFE_HP = 25

# Monsters that are peaceful by nature and stand their ground: not to be hit blind.
GLYPH_KEEPER = np.isin(GLYPH_MONSTER, [_MONSTER_NAMES.index(name) for name in (
    "Oracle", "shopkeeper", "aligned priest", "high priest", "watchman", "watch captain")]) & ~GLYPH_PET

# Conditions that kill within a few turns and that a prayer cures.
DEADLY_CONDITIONS = (nethack.BL_MASK_STONE | nethack.BL_MASK_SLIME | nethack.BL_MASK_STRNGL
                     | nethack.BL_MASK_FOODPOIS | nethack.BL_MASK_TERMILL)

# Conditions that pass in a few turns, during which moving is risky.
IMPAIRED_CONDITIONS = nethack.BL_MASK_BLIND | nethack.BL_MASK_CONF | nethack.BL_MASK_STUN

# A shopkeeper's greeting on the shop's door ("Welcome to Asidonhopo's general store!"), not
# "Welcome to experience level 2". A treasure zoo greets the same way: also best left alone.
SHOP_GREETING = re.compile(rb"welcome (again )?to [^!.]*'s ")

# Food the bot eats from its inventory: not corpses (age unknown), tins (slow) or eggs (risky).
_UNSAFE_FOOD = (b"corpse", b"tin", b"egg")


def _neighbours():
    """For each flat map cell, its (neighbour, direction index) pairs inside the map."""
    table = []
    for y in range(ROWS):
        for x in range(COLS):
            table.append([((y + dy) * COLS + x + dx, d) for d, (_, dy, dx) in enumerate(DIRECTIONS)
                          if 0 <= y + dy < ROWS and 0 <= x + dx < COLS])
    return table


NEIGHBOURS = _neighbours()


def _window_sum(mask: np.ndarray, radius: int) -> np.ndarray:
    """How many cells of the (2 radius + 1)^2 window around each cell are set in `mask`."""
    padded = np.pad(mask.astype(np.int32), ((radius + 1, radius), (radius + 1, radius)))
    integral = padded.cumsum(0).cumsum(1)
    size = 2 * radius + 1
    return (integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size]
            + integral[:-size, :-size])


def _count_neighbours(mask: np.ndarray) -> np.ndarray:
    """How many of each cell's 8 neighbours are set in the boolean map `mask`."""
    padded = np.pad(mask.astype(np.int8), 1)
    total = np.zeros(mask.shape, dtype=np.int8)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                total += padded[1 + dy:1 + dy + ROWS, 1 + dx:1 + dx + COLS]
    return total


# ----------------------------------------------------------------------------------------- level


class Level:
    """What the bot remembers about one dungeon level."""

    def __init__(self):
        self.terrain = np.full((ROWS, COLS), UNKNOWN, dtype=np.int8)
        self.visited = np.zeros((ROWS, COLS), dtype=bool)
        self.bare = np.zeros((ROWS, COLS), dtype=bool)  # terrain seen with nothing on it
        self.sanctuary = np.zeros((ROWS, COLS), dtype=bool)  # around the Oracle, priests, ...
        self.searched = np.zeros((ROWS, COLS), dtype=np.int32)  # search turns spent at each cell
        self.search_cap = 30  # per-spot search turns this round; raised when every spot has it
        self.search_spot = None  # the cell where it searches now
        self.walled_in_since = None  # turn since which an untouchable monster walls the bot in
        self.shop_here = False  # a shopkeeper was heard or seen: doors are not to be kicked
        self.closed = np.zeros((ROWS, COLS), dtype=bool)  # closed doors seen
        self.locked = np.zeros((ROWS, COLS), dtype=bool)  # "This door is locked."
        self.kicks = collections.Counter()  # kicks spent on each locked door
        self.forbidden = np.zeros((ROWS, COLS), dtype=bool)  # shop doors, doors that would not break
        self.failed_moves = collections.Counter()  # (cell, direction) -> moves that went nowhere
        # Monster glyph -> turn until which it counts as peaceful ("Really attack?"). It expires:
        # the glyph names a kind of monster, and a hostile of the same kind may come along.
        self.peaceful: dict[int, int] = {}
        self.steps = 0

    def blocked_edges(self) -> set:
        """(cell, direction) moves that went nowhere three times: walls the map does not show."""
        return {edge for edge, failures in self.failed_moves.items() if failures >= 3}

    def update(self, glyphs: np.ndarray) -> None:
        terrain = GLYPH_TERRAIN[glyphs]
        known = terrain >= 0
        self.terrain[known] = terrain[known]
        self.bare |= known & (terrain != UNKNOWN)
        # Something (an object, a monster) stands on a cell never seen bare: it is passable,
        # and what lies under it (the down stairs, say) is learnt by stepping there.
        covered = ~known & (self.terrain == UNKNOWN)
        self.terrain[covered] = FLOOR
        self.closed = GLYPH_CLOSED_DOOR[glyphs] | (self.closed & ~known)
        self.locked &= self.closed


# ------------------------------------------------------------------------------------------- bot


class NetHackBot:
    """Chooses one NLE action index per step from a NetHack observation (see the module doc)."""

    LEVEL_STEP_BUDGET = 2500  # steps on one level before it descends with parts unexplored
    SEARCH_BURST = 15  # turns per search burst (typed as a count: "15s")
    REST_BURST = 20
    IMPAIRED_BURST = 5
    FIRST_PRAYER_TURN = 300  # NetHack's prayer timeout starts near 300; < 200 is safe in trouble
    PRAYER_INTERVAL = 1000  # turns between prayers (the timeout after a prayer is ~50-1000)
    MAX_KICKS = 12
    WALLED_IN_PATIENCE = 300  # turns walled in by a floating eye before it hits the eye
    PEACEFUL_TURNS = 30
    CHASE_RADIUS = 5  # hostiles this close (and reachable) are hunted down before exploring

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng if rng is not None else np.random.default_rng()
        self.reset()

    def reset(self) -> None:
        """Forget everything: a new game starts."""
        self.levels: dict[tuple[int, int], Level] = {}
        self.queue: list[int] = []  # keys of a multi-key command still to send
        self.text: list[int] = []  # keys to type at the next text prompt
        self.elbereth = None  # (level, cell) where it last engraved Elbereth
        self.feverish = False  # bitten by a were-creature
        self.answer: dict[bytes, int] = {}  # pending answers to the next question, by its text
        self.last_prayer = self.FIRST_PRAYER_TURN - self.PRAYER_INTERVAL
        self.last_message = b""
        self.last_move = None  # (cell, direction) of the move key sent this step
        self.prev_move = None  # ... and the one sent the step before
        self.aim = self.prev_aim = None  # the cells the move or attack keys of now/before aimed at
        self.stuck_steps = 0
        self.prev_hp = 0
        self.last_turn = -1
        self.last_pos = None

    # -------------------------------------------------------------------------- the decision

    def act(self, obs: dict) -> int:
        """The action index for this observation."""
        return KEY_INDEX[self._key(obs)]

    def _key(self, obs: dict) -> int:
        self._observe(obs)
        yn, getlin, more = obs["misc"]
        if more:
            return MORE
        if nh.screen_has_menu(obs["tty_chars"]):
            return ESC
        if yn:
            return self._answer_question()
        if getlin:
            if self.text:  # the text of a command it started (Elbereth)
                return self.text.pop(0)
            return ESC  # naming things, wishes: nothing else the bot wants to type
        if self.queue:
            return self.queue.pop(0)
        # Back at the command prompt: answers and text for a command that asked nothing are stale.
        self.answer.clear()
        self.text.clear()
        if self.stuck_steps > 40:  # something the bot does not understand: shake it loose
            self.stuck_steps = 0
            return ord(DIRECTIONS[self.rng.integers(8)][0])
        for rule in (self._escape_engulfer, self._survive, self._fight, self._wait_out_impairment, self._chase,
                     self._eat_when_hungry, self._rest, self._move):
            key = rule()
            if key is not None:
                return key
        return ord("s")

    # ----------------------------------------------------------------------------- reading

    def _observe(self, obs: dict) -> None:
        blstats = obs["blstats"]
        self.glyphs = obs["glyphs"]
        self.obs = obs
        self.y, self.x = int(blstats[nh.BL_Y]), int(blstats[nh.BL_X])
        self.pos = self.y * COLS + self.x
        self.hp, self.hpmax = int(blstats[nh.BL_HP]), max(1, int(blstats[nh.BL_HPMAX]))
        self.turn = int(blstats[nh.BL_TIME])
        self.hunger = int(blstats[nh.BL_HUNGER])
        self.condition = int(blstats[nh.BL_CONDITION])
        self.impaired = bool(self.condition & IMPAIRED_CONDITIONS)
        self.dnum = int(blstats[nh.BL_DNUM])
        key = (self.dnum, int(blstats[nh.BL_DLEVEL]))
        if key not in self.levels:
            self.levels[key] = Level()
            self.queue.clear()
        self.level = self.levels[key]
        self.level.steps += 1
        self.level.update(self.glyphs)
        self.level.visited[self.y, self.x] = True
        self._passable_now = None
        self._see_monsters()

        # Stuck: the turn counter and position have not changed for many steps.
        if self.turn == self.last_turn and self.pos == self.last_pos:
            self.stuck_steps += 1
        else:
            self.stuck_steps = 0
        moved = self.pos != self.last_pos
        self.last_turn, self.last_pos = self.turn, self.pos

        message = bytes(obs["message"]).rstrip(b"\0")
        fresh = message != self.last_message
        self.last_message = message
        self.message = message.lower() if fresh else b""
        self.prev_move, self.last_move = self.last_move, None
        self.prev_aim, self.aim = self.aim, None
        if self.hp < self.prev_hp:
            self._unmark_attackers()
        self.prev_hp = self.hp
        self._learn_from_move(moved)
        if self.message:
            self._learn_from_message()

    def _see_monsters(self) -> None:
        """Maps of the monsters in sight: hostile (not pets, not known peacefuls; the player's
        own glyph is a monster glyph too) and, of those, the ones safe to melee."""
        glyphs = self.glyphs
        others = (GLYPH_MONSTER[glyphs] >= 0) & ~GLYPH_PET[glyphs]
        others[self.y, self.x] = False
        peaceful = [glyph for glyph, until in self.level.peaceful.items() if until >= self.turn]
        self.hostile = others & ~np.isin(glyphs, peaceful) if peaceful else others
        never = GLYPH_NEVER_MELEE[glyphs]
        if self.hp < GAS_SPORE_SAFE_HP:
            never = never | GLYPH_GAS_SPORE[glyphs]
        # A remembered unseen monster ("I") may be a peaceful, and hitting what one cannot see
        # asks no "Really attack?": hit one only while being hurt, and never near where a
        # peaceful-by-nature monster (the Oracle, a priest, a watchman) was seen.
        keepers = GLYPH_KEEPER[glyphs]
        if keepers.any():
            self.level.sanctuary |= keepers | (_count_neighbours(keepers) > 0)
        unseen = glyphs == nethack.GLYPH_INVISIBLE
        if self.hp >= self.prev_hp:
            never = never | unseen
        else:
            never = never | (unseen & self.level.sanctuary)
        self.attackable = self.hostile & ~never
        # Walk around peacefuls and floating eyes; walking into a stale "I" just clears it.
        self.blocking = others & ~self.attackable & ~(unseen & ~self.level.sanctuary)
        self.untouchable = self.hostile & ~self.attackable & ~unseen

    def _learn_from_move(self, moved: bool) -> None:
        """A move that went nowhere (no fight, no door) counts against that edge of the map."""
        if self.prev_move is None:
            return
        cell, direction = self.prev_move
        if moved or cell != self.pos:
            return
        target = self._step(cell, direction)
        if GLYPH_MONSTER[self.glyphs.flat[target]] >= 0:
            return  # a fight: the edge is fine
        if any(word in self.message for word in (b"door opens", b"this door is locked", b"pit", b"web",
                                                   b"stuck", b"in the way", b"you stop")):
            return  # a door opened (or is locked: it gets kicked), a trap, the pet: not the map
        self.level.failed_moves[cell, direction] += 1

    def _learn_from_message(self) -> None:
        text, level = self.message, self.level
        if b"this door is locked" in text and self.prev_aim is not None:
            level.locked.flat[self.prev_aim] = True
        if any(clue in text for clue in (b"shoplifters", b"cash register", b"closed for inventory")):
            level.shop_here = True  # kicking a shop's door open angers its keeper: no kicking here
        if b"closed for inventory" in text:  # written in front of a closed shop's door
            door = level.terrain == DOOR
            level.forbidden |= door & (_count_neighbours(np.eye(1, ROWS * COLS, self.pos, dtype=bool)
                                                         .reshape(ROWS, COLS)) > 0)
        if SHOP_GREETING.search(text) or b"this shop appears to be deserted" in text:
            # A shop: nothing in it for the bot, and autopickup there would make it a thief.
            # The greeting comes on the door; the room is beyond it, away from where we came.
            level.forbidden[self.y, self.x] = True
            if self.prev_move is not None:
                self._forbid_room(self._step(self.pos, self.prev_move[1]))
        if b"staircase down here" in text or b"ladder down here" in text:
            level.terrain[self.y, self.x] = DOWNSTAIRS
        if b"you feel feverish" in text:
            self.feverish = True  # lycanthropy: a prayer cures it
        if b"you feel purified" in text:
            self.feverish = False
        if b"you feel that" in text and b"displeased" in text:
            self.last_prayer = self.turn  # prayed too soon: wait a full interval again

    def _unmark_attackers(self) -> None:
        """Hurt with a "peaceful" beside us: that kind of monster is not peaceful here."""
        for cell, _ in NEIGHBOURS[self.pos]:
            self.level.peaceful.pop(int(self.glyphs.flat[cell]), None)

    def _forbid_room(self, cell: int) -> None:
        """Mark the room floor connected to `cell` (walls and doors bound it) as off limits."""
        level = self.level
        todo = [cell]
        while todo:
            cell = todo.pop()
            if level.forbidden.flat[cell] or level.terrain.flat[cell] not in (FLOOR, TRAP, DOWNSTAIRS):
                continue
            level.forbidden.flat[cell] = True
            todo.extend(nxt for nxt, _ in NEIGHBOURS[cell])

    # --------------------------------------------------------------------------- questions

    def _answer_question(self) -> int:
        text = bytes(self.obs["message"]).rstrip(b"\0")
        lower = text.lower()
        for question, key in list(self.answer.items()):
            if question in lower:
                del self.answer[question]
                return key
        if b"really attack" in lower:
            # A peaceful: leave it alone and remember its glyph on this level.
            if self.prev_aim is not None:
                glyph = int(self.glyphs.flat[self.prev_aim])
                self.level.peaceful[glyph] = self.turn + self.PEACEFUL_TURNS
            return ESC
        if b"are you sure you want to pray" in lower:
            return ord("y")
        if b"eat it?" in lower or b"eat one?" in lower or b"continue eating" in lower:
            return ord("n")  # food on the floor is of unknown age; inventory food comes next
        if b"still climb" in lower:
            return ord("n")  # "<" on level 1 leaves the dungeon and ends the game
        return ESC  # decline everything else (picking up heavy things, naming, ...)

    # ------------------------------------------------------------------------------- rules

    def _escape_engulfer(self):
        """Engulfed: every direction hits the engulfer from inside."""
        y, x = self.y, self.x
        around = self.glyphs[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
        if GLYPH_SWALLOW[around].any():
            return ord("k")
        return None

    def _survive(self):
        since_prayer = self.turn - self.last_prayer
        if (self.condition & DEADLY_CONDITIONS or self.hunger >= 4) and since_prayer > 100:
            self.last_prayer = self.turn  # stoning, sliming, strangling, illness, fainting from
            return PRAY  # hunger: certain death unless a god helps, whatever the prayer timeout
        hp_critical = self.hp <= 5 or self.hp * 7 <= self.hpmax
        if (hp_critical or self.hunger >= 3 or self.feverish) and since_prayer >= self.PRAYER_INTERVAL:
            self.last_prayer = self.turn
            return PRAY  # NetHack fixes low HP and weakness when the prayer timeout allows
        if self.hp * 3 <= self.hpmax and self._hostile_near(1):
            letter = self._inventory_letter(lambda cls, s: cls == nethack.POTION_CLASS and b"healing" in s)
            if letter is not None:
                self.answer[b"drink"] = letter
                return ord("q")
            if not self._on_elbereth():
                return self._engrave_elbereth()
        if self._on_elbereth() and self.hp * 3 < self.hpmax * 2 and self.hp >= self.prev_hp:
            # Most monsters will not melee us here; fighting would erase it. Rest instead.
            return self._search(self.REST_BURST)
        if self.hunger >= 3:
            return self._eat()
        return None

    def _engrave_elbereth(self):
        """Write Elbereth in the dust with a finger: E, -, (do not add to an old engraving), text."""
        self.answer[b"write with"] = ord("-")
        self.answer[b"add to the current engraving"] = ord("n")
        self.text = [ord(c) for c in "Elbereth"] + [MORE]
        self.elbereth = (self.level, self.pos)
        return ord("E")

    def _on_elbereth(self) -> bool:
        return self.elbereth == (self.level, self.pos)

    def _eat(self):
        letter = self._food_letter()
        if letter is None:
            return None
        self.answer[b"what do you want to eat"] = letter
        return ord("e")

    def _fight(self):
        targets = []
        for cell, direction in NEIGHBOURS[self.pos]:
            if self.attackable.flat[cell] and self._door_allows(self.pos, cell, direction):
                targets.append(direction)
        if not targets:
            return self._fight_through()
        return self._attack_key(targets[int(self.rng.integers(len(targets)))])

    def _fight_through(self):
        """Walled in by a monster it must not melee: hit a mold or jelly (they never move) if HP
        allows; scare anything else (a floating eye in the only doorway) with Elbereth, and if
        that has not moved it for a long while, hit it at full health with nobody else around
        (a floating eye paralyses; being walled in for the rest of the game is worse)."""
        level = self.level
        untouchable = self.untouchable
        if not untouchable[max(0, self.y - 1):self.y + 2, max(0, self.x - 1):self.x + 2].any():
            return None
        if not self._walled_in():
            level.walled_in_since = None
            return None
        if level.walled_in_since is None:
            level.walled_in_since = self.turn
        patience_over = (self.turn - level.walled_in_since > self.WALLED_IN_PATIENCE and self.hp == self.hpmax
                         and self.hostile.sum() == untouchable.sum() == 1)
        for cell, direction in NEIGHBOURS[self.pos]:
            if not untouchable.flat[cell] or not self._door_allows(self.pos, cell, direction):
                continue
            monster = int(GLYPH_MONSTER[self.glyphs.flat[cell]])
            needed = MELEE_WHEN_WALLED_IN.get(monster)
            if needed is not None and self.hp >= needed:
                return self._attack_key(direction)
            if patience_over and monster == FLOATING_EYE:
                return self._attack_key(direction)
        if not self._on_elbereth():
            return self._engrave_elbereth()
        return None

    def _walled_in(self) -> bool:
        """Nothing to explore and no way down that the bot can reach."""
        level = self.level
        return (self._path_to(self._frontier() | self._kick_spots()) is None
                and self._path_to(level.terrain == DOWNSTAIRS) is None)

    def _wait_out_impairment(self):
        """Blind, every monster is unseen (peacefuls too) and the map stops updating; confused
        or stunned, moves go astray (into a peaceful, asking nothing). Stay put (short
        searches) until it passes; `_fight` still hits back at what hurts us."""
        return self._search(self.IMPAIRED_BURST) if self.impaired else None

    def _chase(self):
        """Walk towards a hostile in sight nearby: fighting it beats being hit while searching."""
        y, x, r = self.y, self.x, self.CHASE_RADIUS
        targets = np.zeros((ROWS, COLS), dtype=bool)
        window = (slice(max(0, y - r), y + r + 1), slice(max(0, x - r), x + r + 1))
        targets[window] = self.attackable[window]
        if not targets.any():
            return None
        # Monsters block paths; the path may end beside the monster (the fight rule takes over).
        beside = _count_neighbours(targets) > 0
        direction = self._path_to(beside & self._passable(), limit=2 * r)
        return None if direction is None else self._move_key(direction)

    def _eat_when_hungry(self):
        return self._eat() if self.hunger >= 2 else None

    def _rest(self):
        """Hurt and nothing hostile in sight: rest with a search count (interrupted by monsters)."""
        if self.hp * 2 < self.hpmax and not self._hostile_near(6):
            return self._search(self.REST_BURST)
        return None

    def _move(self):
        level = self.level
        # Kick a locked door beside us that leads somewhere unexplored.
        for cell, direction in NEIGHBOURS[self.pos]:
            if direction < 4 and level.locked.flat[cell] and self._worth_kicking(cell):
                level.kicks[cell] += 1
                if level.kicks[cell] >= self.MAX_KICKS:
                    level.forbidden.flat[cell] = True
                self.answer[b"in what direction"] = ord(DIRECTIONS[direction][0])
                return KICK

        explore = self._path_to(self._frontier() | self._kick_spots())
        if explore is None or level.steps > self.LEVEL_STEP_BUDGET:
            if level.terrain[self.y, self.x] == DOWNSTAIRS:
                if self.hp * 3 < self.hpmax * 2 and not self._hostile_near(6):
                    return self._search(self.REST_BURST)  # arrive on the next level in good shape
                return ord(">")
            direction = self._path_to(level.terrain == DOWNSTAIRS)
            if direction is not None:
                return self._move_key(direction)
        if explore is not None:
            return self._move_key(explore)
        return self._search_for_hidden_passages()

    # ------------------------------------------------------------------------- exploration

    def _frontier(self) -> np.ndarray:
        """Passable cells not yet stood on that touch unexplored cells (where the map grows) or
        whose floor was never seen (objects may hide the stairs)."""
        level = self.level
        unknown = _count_neighbours(level.terrain == UNKNOWN) > 0
        boulders = (self.glyphs == BOULDER_GLYPH) & ~level.forbidden  # reached by pushing them
        return (self._passable() | boulders) & ~level.visited & (unknown | ~level.bare)

    def _kick_spots(self) -> np.ndarray:
        """Cells orthogonally beside a locked door that is worth kicking."""
        level = self.level
        spots = np.zeros((ROWS, COLS), dtype=bool)
        for cell in np.flatnonzero(level.locked & ~level.forbidden):
            if self._worth_kicking(int(cell)):
                y, x = divmod(int(cell), COLS)
                for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                    if 0 <= y + dy < ROWS and 0 <= x + dx < COLS:
                        spots[y + dy, x + dx] = True
        return spots & self._passable()

    def _worth_kicking(self, cell: int) -> bool:
        """A locked door with unexplored rock around it, in the main dungeon (Minetown's doors
        are watched: kicking one there angers the town)."""
        if self.dnum != 0 or self.level.shop_here:
            return False
        y, x = divmod(cell, COLS)
        level = self.level
        around = level.terrain[max(0, y - 1):y + 2, max(0, x - 1):x + 2]
        return not level.forbidden.flat[cell] and bool((around == UNKNOWN).any())

    def _search_for_hidden_passages(self) -> int:
        """Nothing left to explore and no way down: search for hidden doors and corridors, in
        bursts, at one chosen spot at a time (see `_choose_search_spot`)."""
        level = self.level
        spot = level.search_spot
        near_blocker = _window_sum(self.blocking, 2) > 0  # a floating eye in a doorway moves
        if (spot is None or level.searched.flat[spot] >= level.search_cap or not self._passable().flat[spot]
                or near_blocker.flat[spot]):  # only if we leave it room (it tends to stay beside us)
            spot = level.search_spot = self._choose_search_spot(near_blocker)
        if spot is not None and spot != self.pos:
            targets = np.zeros((ROWS, COLS), dtype=bool)
            targets.flat[spot] = True
            direction = self._path_to(targets)
            if direction is not None:
                return self._move_key(direction)
            level.search_spot = None
        # A search looks at all eight neighbours: count the burst for the whole 3x3 block.
        y, x = self.y, self.x
        level.searched[max(0, y - 1):y + 2, max(0, x - 1):x + 2] += self.SEARCH_BURST
        return self._search(self.SEARCH_BURST)

    def _choose_search_spot(self, avoid: np.ndarray):
        """The reachable cell, beside a wall or unexplored rock and not in `avoid`, with the
        most unexplored map around it (dead-end corridors count double), less a cost for the
        walk there."""
        level = self.level
        passable = self._passable()
        unknown = level.terrain == UNKNOWN
        border = passable & (_count_neighbours(unknown | (level.terrain == WALL)) > 0) & ~avoid
        while True:
            candidates = border & (level.searched < level.search_cap)
            if candidates.any() or not border.any():
                break
            level.search_cap += 2 * self.SEARCH_BURST  # every spot had its bursts: another round
        if not candidates.any():
            return None
        potential = _window_sum(unknown, 5).astype(np.float32)
        dead_end = (level.terrain == CORRIDOR) & (_count_neighbours(passable) <= 1)
        potential[dead_end] *= 2
        distance = self._distances(passable)
        reachable = candidates & (distance >= 0)
        if not reachable.any():
            return None
        score = np.where(reachable, potential - 0.5 * distance, -np.inf)
        return int(np.argmax(score))

    def _distances(self, passable: np.ndarray) -> np.ndarray:
        """BFS distance (in moves) from the player to every cell; -1 where unreachable."""
        passable_flat = passable.ravel().tolist()
        door_flat = (self.level.terrain == DOOR).ravel().tolist()
        blocked = self.level.blocked_edges()
        distance = [-1] * (ROWS * COLS)
        distance[self.pos] = 0
        layer = [self.pos]
        while layer:
            next_layer = []
            for cell in layer:
                for nxt, direction in NEIGHBOURS[cell]:
                    if (distance[nxt] < 0 and passable_flat[nxt] and (cell, direction) not in blocked
                            and not (direction >= 4 and (door_flat[cell] or door_flat[nxt]))):
                        distance[nxt] = distance[cell] + 1
                        next_layer.append(nxt)
            layer = next_layer
        return np.asarray(distance, dtype=np.float32).reshape(ROWS, COLS)

    def _search(self, turns: int) -> int:
        """A counted search: digits then `s` (three keys for many turns, not many `s` keys)."""
        digits = [ord(c) for c in str(turns)]
        self.queue = digits[1:] + [ord("s")]
        return digits[0]

    # -------------------------------------------------------------------------------- paths

    def _passable(self) -> np.ndarray:
        if self._passable_now is None:
            self._passable_now = self._compute_passable()
        return self._passable_now

    def _compute_passable(self) -> np.ndarray:
        level = self.level
        passable = np.isin(level.terrain, PASSABLE) & ~level.locked & ~level.forbidden
        return passable & ~self.blocking & (self.glyphs != BOULDER_GLYPH)

    def _path_to(self, targets: np.ndarray, limit: int = ROWS * COLS):
        """First direction of a shortest path (at most `limit` steps) to a target cell, or None."""
        if not targets.any():
            return None
        passable = self._passable()
        direction = self._bfs(passable, targets, limit)
        if direction is None:
            # Second try: through known traps and boulders (pushed along; a boulder that will
            # not move gets its edge blocked by `_learn_from_move`), never shop or locked doors.
            level = self.level
            detour = (((level.terrain == TRAP) | (self.glyphs == BOULDER_GLYPH)) & ~level.forbidden
                      & ~level.locked & ~self.blocking)
            if detour.any():
                direction = self._bfs(passable | detour, targets, limit)
        return direction

    def _bfs(self, passable: np.ndarray, targets: np.ndarray, limit: int):
        start = self.pos
        if targets.flat[start]:
            return None
        passable_flat = passable.ravel().tolist()
        target_flat = targets.ravel().tolist()
        door_flat = (self.level.terrain == DOOR).ravel().tolist()
        blocked = self.level.blocked_edges()
        first = {start: None}  # cell -> first direction of the path that reached it
        layer, distance = [start], 0
        while layer and distance < limit:
            distance += 1
            next_layer = []
            for cell in layer:
                for nxt, direction in NEIGHBOURS[cell]:
                    # (_can_step, inlined: this loop is most of the bot's time)
                    if (nxt in first or not passable_flat[nxt] or (cell, direction) in blocked
                            or direction >= 4 and (door_flat[cell] or door_flat[nxt])):
                        continue
                    first[nxt] = direction if cell == start else first[cell]
                    if target_flat[nxt]:
                        return first[nxt]
                    next_layer.append(nxt)
            layer = next_layer
        return None

    def _can_step(self, cell: int, nxt: int, direction: int) -> bool:
        return (cell, direction) not in self.level.blocked_edges() and self._door_allows(cell, nxt, direction)

    def _door_allows(self, cell: int, nxt: int, direction: int) -> bool:
        """No diagonal move into or out of a doorway that has a door (open or closed)."""
        terrain = self.level.terrain
        return direction < 4 or (terrain.flat[cell] != DOOR and terrain.flat[nxt] != DOOR)

    def _step(self, cell: int, direction: int) -> int:
        _, dy, dx = DIRECTIONS[direction]
        return cell + dy * COLS + dx

    def _move_key(self, direction: int) -> int:
        self.last_move = (self.pos, direction)
        self.aim = self._step(self.pos, direction)
        return ord(DIRECTIONS[direction][0])

    def _attack_key(self, direction: int) -> int:
        self.aim = self._step(self.pos, direction)  # a fight is no evidence about the map:
        return ord(DIRECTIONS[direction][0])  # no last_move


    # ------------------------------------------------------------------------------ helpers

    def _hostile_near(self, radius: int) -> bool:
        y, x = self.y, self.x
        return bool(self.hostile[max(0, y - radius):y + radius + 1, max(0, x - radius):x + radius + 1].any())

    def _inventory_letter(self, accept):
        obs = self.obs
        for letter, cls, text in zip(obs["inv_letters"], obs["inv_oclasses"], obs["inv_strs"]):
            if letter and accept(int(cls), bytes(text)):
                return int(letter)
        return None

    def _food_letter(self):
        return self._inventory_letter(lambda cls, s: cls == nethack.FOOD_CLASS
                                      and not any(word in s for word in _UNSAFE_FOOD))


# -------------------------------------------------------------------------------- recording


def play_game(env, bot: NetHackBot, action_counts: np.ndarray | None = None, seeds: tuple[int, int] | None = None
              ) -> dict:
    """Play one game of `bot` in `env` to its end: the game of `seeds` in a seeded environment, else
    whatever game the reset brings; a game cut by the step limit is ended through NetHack's quit
    path (`finish_game`) so that its ttyrec is kept."""
    obs, _ = nh.start_game(env, seeds)
    bot.reset()
    nle_seeds = nh.game_seeds(env)
    blstats = obs["blstats"].copy()
    steps, max_depth = 0, int(blstats[nh.BL_DEPTH])
    while True:
        action = bot.act(obs)
        if action_counts is not None:
            action_counts[action] += 1
        obs, _, terminated, truncated, _ = env.step(action)
        steps += 1
        if not nh.game_over(env):  # after the end NLE's blstats no longer describe the game
            blstats = obs["blstats"].copy()
            max_depth = max(max_depth, int(blstats[nh.BL_DEPTH]))
        if terminated or truncated:
            break
    quit_by_limit = nh.finish_game(env)
    return {"score": int(blstats[nh.BL_SCORE]), "max_depth": max_depth, "turns": int(blstats[nh.BL_TIME]),
            "steps": steps, "truncated": bool(truncated or quit_by_limit), "seeds": nle_seeds}


def _record_worker(worker: int, out_dir: str, game_indices: list[int], max_episode_steps: int, character: str,
                   seed: int, env_kind: str, messages) -> None:
    """One process: play games `game_indices`, each into its own folder `out_dir/<index>/`.

    Each game has its own environment (NLE fixes a savedir per environment) and, in a seeded
    environment, its own seeds; the bot's choices come from a generator seeded by (seed, game).
    So a game is the same whichever worker plays it.
    """
    try:
        bot = NetHackBot()
        action_counts = np.zeros(len(nethack.ACTIONS), dtype=np.int64)
        started = time.perf_counter()
        records = []
        for index in game_indices:
            env = nh.make_env(env_kind, character=character, max_episode_steps=max_episode_steps,
                              savedir=Path(out_dir) / game_folder(index), observation_keys=BOT_OBSERVATION_KEYS)
            try:
                bot.rng = nh.bot_generator(seed, index)
                seeds = nh.game_seeds_of(seed, "bot", index) if env_kind == "seeded" else None
                record = play_game(env, bot, action_counts, seeds)
            finally:
                env.close()
            record["game"] = index
            records.append(record)
            messages.put(("game", worker, record))
        seconds = time.perf_counter() - started
        messages.put(("done", worker, {"records": records, "action_counts": action_counts.tolist(),
                                       "steps": sum(r["steps"] for r in records), "seconds": seconds}))
    except BaseException as err:  # report, so that the parent fails with the cause
        import traceback

        messages.put(("error", worker, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


def game_folder(index: int) -> str:
    """The folder of bot game `index` under the recording's root."""
    return f"{index:05d}"


def record_bot_games(out_dir, *, games: int, processes: int, max_episode_steps: int,
                     character: str = nh.CHARACTER, seed: int = 0, env_kind: str = "seeded", log=print) -> dict:
    """Record `games` bot games as NLE ttyrecs, game i in `out_dir/<i>/`, and write `card.json`.

    The `*/*.xlogfile` layout is the one `nle.dataset.add_nledata_directory(out_dir, name, db)`
    reads, in game order. Games are played by `processes` worker processes (spawned: NLE is not
    fork-safe), which only sets the speed: in a `seeded` environment (games/nethack.py) every game
    is fixed by `seed` and its index, the bot's choices included, and the workers run on the
    pinned clock, so the same seed gives the same ttyrecs on any day. In `challenge` the games
    are the wall clock's; their starting seeds are recorded. Returns the data card.
    """
    from ilscaling.io import provenance, write_json

    if games < 1 or processes < 1:
        raise ValueError(f"games ({games}) and processes ({processes}) must be at least 1")
    if env_kind not in nh.ENV_KINDS:
        raise ValueError(f"NetHack environment kind must be one of {nh.ENV_KINDS}, got {env_kind!r}")
    out_dir = Path(out_dir)
    if list(out_dir.glob("*/*xlogfile")):
        raise FileExistsError(f"{out_dir} already holds recorded games; record into an empty folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    processes = min(processes, games)
    assignments = [list(part) for part in np.array_split(np.arange(games), processes)]
    context = mp.get_context("spawn")
    messages = context.Queue()
    workers = []
    with nh.clock_context(env_kind):
        for worker, indices in enumerate(assignments):
            process = context.Process(target=_record_worker, daemon=True,
                                      args=(worker, str(out_dir), [int(i) for i in indices], max_episode_steps,
                                            character, seed, env_kind, messages))
            process.start()
            workers.append(process)

    started = time.perf_counter()
    results, played = {}, 0
    try:
        while len(results) < len(workers):
            try:
                kind, worker, payload = messages.get(timeout=5)
            except Exception:  # queue.Empty: check that every unfinished worker is still alive
                dead = [w for w, p in enumerate(workers) if w not in results and not p.is_alive()]
                if dead:
                    raise RuntimeError(f"NetHack recording worker(s) {dead} died without reporting "
                                       f"(exit codes {[workers[w].exitcode for w in dead]})")
                continue
            if kind == "error":
                raise RuntimeError(f"NetHack recording worker {worker} failed: {payload}")
            if kind == "game":
                played += 1
                log(f"game {played}/{games} (#{payload['game']}, worker {worker}): score {payload['score']}, depth "
                    f"{payload['max_depth']}, {payload['turns']} turns, {payload['steps']} steps"
                    f"{' (step limit)' if payload['truncated'] else ''}")
            else:
                results[worker] = payload
        for process in workers:
            process.join(timeout=60)
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()
    wall_s = time.perf_counter() - started

    # Each game's xlogfile line (or the recording lost it: see games/nethack.py) and its start.
    records = sorted((r for w in results for r in results[w]["records"]), key=lambda r: r["game"])
    for record in records:
        folder = out_dir / game_folder(record["game"])
        lines = nh.xlogfile_games(folder)
        if len(lines) != 1:
            raise RuntimeError(f"bot game {record['game']} has {len(lines)} xlogfile lines in {folder}, expected 1: "
                               "games without an xlogfile line are invisible to nle.dataset")
        line = lines[0]
        record["death"] = str(line.get("death", ""))
        record["points"] = int(line.get("points", 0))
        record["turns"] = int(line["turns"])  # NetHack's counts (see games/nethack_vec.py)
        record["max_depth"] = int(line["maxlvl"])
        record["start"] = nh.game_start(folder / str(line["ttyrecname"]))
    if len(records) != games:
        raise RuntimeError(f"recorded {len(records)} games, expected {games}")

    card = _card(records, results, games=games, processes=len(workers), max_episode_steps=max_episode_steps,
                 character=character, seed=seed, env_kind=env_kind, wall_s=wall_s, out_dir=out_dir)
    card["provenance"] = provenance()
    write_json(card, out_dir / "card.json")
    log(f"NetHack bot ({env_kind}): {games} games, {card['frames']} frames, mean score "
        f"{card['expert_mean_return']:.0f}, mean max depth {card['mean_max_depth']:.2f}, "
        f"{card['bytes'] / 1e6:.1f} MB, {card['steps_per_s_per_process']:.0f} steps/s per process")
    return card


def _card(records, results, *, games, processes, max_episode_steps, character, seed, env_kind, wall_s, out_dir
          ) -> dict:
    scores = np.array([r["score"] for r in records], dtype=np.float64)
    depths = [r["max_depth"] for r in records]
    action_counts = np.sum([results[w]["action_counts"] for w in results], axis=0)
    histogram = {ACTION_NAMES[i]: int(c) for i, c in enumerate(action_counts) if c}
    frames = int(sum(r["steps"] for r in records))
    top = max(histogram, key=histogram.get)
    recording = [p for p in Path(out_dir).glob("*/*") if p.is_file()]
    size = sum(p.stat().st_size for p in recording)
    return {
        "game": "NetHack",
        "env": env_kind,
        "env_id": nh.SEEDED_ENV_ID if env_kind == "seeded" else nh.ENV_ID,
        "clock": nh.CLOCK_MODES[env_kind],
        "character": character,
        "games": games,
        "frames": frames,
        "max_episode_steps": max_episode_steps,
        "seed": seed,
        "processes": processes,
        "expert": "heuristic bot (ilscaling.games.nethack_bot)",
        "expert_mean_return": float(scores.mean()),
        "mean_score": float(scores.mean()),
        "median_score": float(np.median(scores)),
        "scores": [int(s) for s in scores],
        "xlogfile_points": [r["points"] for r in records],
        "max_depths": depths,
        "max_depth_counts": {str(d): depths.count(d) for d in sorted(set(depths))},
        "mean_max_depth": float(np.mean(depths)),
        "turns": [r["turns"] for r in records],
        "mean_turns": float(np.mean([r["turns"] for r in records])),
        "steps": [r["steps"] for r in records],
        "games_truncated": int(sum(r["truncated"] for r in records)),
        "death_counts": dict(collections.Counter(r["death"] for r in records).most_common()),
        "action_histogram": histogram,
        "top_actions": [[name, count / frames] for name, count in
                        sorted(histogram.items(), key=lambda item: -item[1])[:10]],
        "most_common_action": top,
        "most_common_action_fraction": histogram[top] / frames,
        "bytes": int(size),
        "files": len(recording),
        "bytes_per_frame": size / max(frames, 1),
        "steps_per_s_per_process": float(np.mean([results[w]["steps"] / max(results[w]["seconds"], 1e-9)
                                                  for w in results])),
        "wall_s": wall_s,
        # NetHack's seeds as NLE reported them at each game's start: in `seeded` they are
        # game_seeds_of(seed, "bot", game) and replay the game; in `challenge` they only identify it.
        "seeds": [r["seeds"] for r in records],
        # Per game, from its ttyrec: NLE's reset keys (recorded frames that are not the bot's)
        # and what NetHack announced at the start (moon phase, Friday the 13th).
        "reset_keys": [r["start"]["reset_keys"] for r in records],
        "start_announcements": {name: sum(r["start"][name] for r in records)
                                for name in ("full_moon", "new_moon", "friday_13th")},
        "game_starts": [r["start"] for r in records],
    }
