"""Vocabulary and sentence grammar of the synthetic mini-LibriSpeech corpus.

Everything here was written for this project: a few hundred common English words in semantic
classes (people, animals, things, places, verbs with the kinds of object they take, ...) and a
small stochastic grammar of narrative sentences, questions, commands and short replies, in the
plain style of read audiobooks.

A sentence is produced as a list of tokens: words in upper case (LibriSpeech's transcript
alphabet: ``A``-``Z``, the apostrophe and single spaces) and the punctuation marks ``,`` ``.``
``?`` that only guide the synthesiser's phrasing. :class:`Sentence` gives both renderings.

:func:`sentence_near` draws candidates from the grammar and returns the one whose length in
words is nearest a target, so that a caller can aim at a duration.

A second, small grammar (``grammar="small"``: :func:`small_vocabulary`, a few dozen words in
five short patterns such as ``PETER FOUND THREE RED APPLES``) makes a corpus a small model can
learn from in minutes on a CPU.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

__all__ = ["GRAMMARS", "Sentence", "random_sentence", "sentence_near", "small_vocabulary",
           "vocabulary"]

_PUNCT = {",", ".", "?"}
_WORD = re.compile(r"^[A-Z']+$")


@dataclass(frozen=True)
class Sentence:
    """A generated sentence. ``tokens`` are upper-case words and punctuation marks."""

    tokens: tuple[str, ...]

    @property
    def words(self) -> list[str]:
        return [t for t in self.tokens if t not in _PUNCT]

    @property
    def transcript(self) -> str:
        """LibriSpeech transcript: upper-case words separated by single spaces."""
        return " ".join(self.words)

    @property
    def spoken(self) -> str:
        """Text for the synthesiser: lower case, with punctuation for phrasing."""
        out = ""
        for t in self.tokens:
            if t in _PUNCT:
                out += t
            else:
                out += (" " if out else "") + t.lower()
        return out


# --------------------------------------------------------------------------------------------
# Vocabulary. Nouns are (singular, plural); verbs (base, past).

PEOPLE = [
    ("MILLER", "MILLERS"), ("BAKER", "BAKERS"), ("FARMER", "FARMERS"), ("SAILOR", "SAILORS"),
    ("TEACHER", "TEACHERS"), ("DOCTOR", "DOCTORS"), ("SOLDIER", "SOLDIERS"),
    ("MERCHANT", "MERCHANTS"), ("FISHERMAN", "FISHERMEN"), ("SHEPHERD", "SHEPHERDS"),
    ("CAPTAIN", "CAPTAINS"), ("STRANGER", "STRANGERS"), ("WIDOW", "WIDOWS"),
    ("CHILD", "CHILDREN"), ("BOY", "BOYS"), ("GIRL", "GIRLS"), ("WOMAN", "WOMEN"),
    ("MAN", "MEN"), ("KING", "KINGS"), ("QUEEN", "QUEENS"), ("PRINCE", "PRINCES"),
    ("SERVANT", "SERVANTS"), ("TRAVELER", "TRAVELERS"), ("HUNTER", "HUNTERS"),
    ("CARPENTER", "CARPENTERS"), ("WEAVER", "WEAVERS"), ("BLACKSMITH", "BLACKSMITHS"),
    ("PAINTER", "PAINTERS"), ("POET", "POETS"), ("CLERK", "CLERKS"), ("STUDENT", "STUDENTS"),
    ("NURSE", "NURSES"), ("GARDENER", "GARDENERS"), ("INNKEEPER", "INNKEEPERS"),
    ("JUDGE", "JUDGES"), ("MUSICIAN", "MUSICIANS"), ("COOK", "COOKS"), ("GUARD", "GUARDS"),
    ("MESSENGER", "MESSENGERS"), ("SCHOLAR", "SCHOLARS"), ("UNCLE", "UNCLES"),
    ("AUNT", "AUNTS"), ("COUSIN", "COUSINS"), ("NEIGHBOR", "NEIGHBORS"),
    ("GRANDMOTHER", "GRANDMOTHERS"), ("BROTHER", "BROTHERS"), ("SISTER", "SISTERS"),
    ("FRIEND", "FRIENDS"), ("PILGRIM", "PILGRIMS"), ("PEDDLER", "PEDDLERS"),
]
ANIMALS = [
    ("DOG", "DOGS"), ("CAT", "CATS"), ("HORSE", "HORSES"), ("COW", "COWS"),
    ("SHEEP", "SHEEP"), ("GOAT", "GOATS"), ("PIG", "PIGS"), ("FOX", "FOXES"),
    ("WOLF", "WOLVES"), ("BEAR", "BEARS"), ("RABBIT", "RABBITS"), ("OWL", "OWLS"),
    ("CROW", "CROWS"), ("SPARROW", "SPARROWS"), ("MOUSE", "MICE"), ("DEER", "DEER"),
    ("DUCK", "DUCKS"), ("GOOSE", "GEESE"), ("HEN", "HENS"), ("DONKEY", "DONKEYS"),
    ("EAGLE", "EAGLES"), ("PONY", "PONIES"), ("SQUIRREL", "SQUIRRELS"), ("BEETLE", "BEETLES"),
]
THINGS = [
    ("LETTER", "LETTERS"), ("BASKET", "BASKETS"), ("LANTERN", "LANTERNS"), ("KEY", "KEYS"),
    ("BOOK", "BOOKS"), ("COAT", "COATS"), ("HAT", "HATS"), ("BOTTLE", "BOTTLES"),
    ("BOX", "BOXES"), ("BAG", "BAGS"), ("LOAF", "LOAVES"), ("CUP", "CUPS"),
    ("PLATE", "PLATES"), ("KNIFE", "KNIVES"), ("ROPE", "ROPES"), ("CANDLE", "CANDLES"),
    ("MAP", "MAPS"), ("COIN", "COINS"), ("RING", "RINGS"), ("BELL", "BELLS"),
    ("CHAIR", "CHAIRS"), ("TABLE", "TABLES"), ("BLANKET", "BLANKETS"), ("BUCKET", "BUCKETS"),
    ("HAMMER", "HAMMERS"), ("LADDER", "LADDERS"), ("MIRROR", "MIRRORS"), ("PEN", "PENS"),
    ("STONE", "STONES"), ("STICK", "STICKS"), ("APPLE", "APPLES"), ("PEAR", "PEARS"),
    ("FLOWER", "FLOWERS"), ("FEATHER", "FEATHERS"), ("SHOE", "SHOES"), ("BOOT", "BOOTS"),
    ("CLOCK", "CLOCKS"), ("VIOLIN", "VIOLINS"), ("DRUM", "DRUMS"), ("WHEEL", "WHEELS"),
    ("NET", "NETS"), ("BARREL", "BARRELS"), ("UMBRELLA", "UMBRELLAS"), ("PARCEL", "PARCELS"),
    ("RIBBON", "RIBBONS"), ("SCARF", "SCARVES"), ("PILLOW", "PILLOWS"), ("JAR", "JARS"),
    ("KETTLE", "KETTLES"), ("SPOON", "SPOONS"), ("BRUSH", "BRUSHES"), ("SADDLE", "SADDLES"),
    ("SACK", "SACKS"), ("NEEDLE", "NEEDLES"), ("PUZZLE", "PUZZLES"), ("TICKET", "TICKETS"),
    ("WAGON", "WAGONS"), ("BOAT", "BOATS"), ("PAINTING", "PAINTINGS"), ("WHISTLE", "WHISTLES"),
]
PLACES = [
    "HOUSE", "GARDEN", "RIVER", "BRIDGE", "FOREST", "HILL", "VILLAGE", "TOWN", "CITY",
    "MARKET", "CHURCH", "SCHOOL", "KITCHEN", "CELLAR", "TOWER", "HARBOR", "ISLAND", "FIELD",
    "MEADOW", "ROAD", "GATE", "WELL", "MILL", "BARN", "FARM", "CASTLE", "INN", "STATION",
    "LIBRARY", "SHOP", "LAKE", "VALLEY", "MOUNTAIN", "SHORE", "COTTAGE", "CHAPEL", "ORCHARD",
    "STABLE", "SQUARE", "STREET", "WINDOW", "DOOR", "FENCE", "WALL", "YARD", "HALL", "ATTIC",
    "STAIRCASE", "CORNER", "PATH", "CLIFF", "POND", "WOODS", "BEACH",
]
NAMES = [
    "MARTHA", "PETER", "HELEN", "GEORGE", "CLARA", "ARTHUR", "EDITH", "WALTER", "ALICE",
    "HENRY", "LUCY", "SAMUEL", "GRACE", "OLIVER", "ROSE", "DANIEL", "EMMA", "FRANCIS", "JANE",
    "ROBERT", "MARGARET", "WILLIAM", "ELLEN", "JAMES", "SARAH", "CHARLES", "NORA", "HUGH",
    "JULIA", "BENJAMIN", "ANNA", "THOMAS",
]
# Adjectives that fit a predicate about a person or animal ("THE BAKER WAS ..."); the first
# ones also stand before a noun ("THE TIRED BAKER").
MOOD_ADJECTIVES = [
    "TIRED", "HUNGRY", "CAREFUL", "HONEST", "PROUD", "KIND", "ANGRY", "HAPPY", "SILENT",
    "SLEEPY", "BUSY", "LONELY", "FOOLISH", "WISE", "BRAVE", "CURIOUS", "EAGER", "POLITE",
    "CHEERFUL", "GRUMPY", "FRIENDLY", "STUBBORN", "PATIENT", "GENTLE", "CLEVER", "QUIET",
    "COLD", "WARM", "WET", "CALM", "PUZZLED",
]
PREDICATE_ONLY_ADJECTIVES = ["AFRAID", "READY", "SURE", "ALONE", "GLAD", "ASLEEP", "AWAKE"]
PREDICATE_ADJECTIVES = MOOD_ADJECTIVES + PREDICATE_ONLY_ADJECTIVES
# Adjectives before a person or an animal.
PERSON_ADJECTIVES = MOOD_ADJECTIVES + ["OLD", "YOUNG", "TALL", "SHORT", "POOR", "RICH",
                                       "FAMOUS", "HUMBLE", "PALE", "LOUD", "LITTLE", "BRIGHT"]
THING_ADJECTIVES = [
    "OLD", "SMALL", "LARGE", "HEAVY", "EMPTY", "BROKEN", "NEW", "STRANGE", "WOODEN", "GOLDEN",
    "SILVER", "GREEN", "RED", "BLUE", "BROWN", "WHITE", "BLACK", "YELLOW", "GRAY", "ROUND",
    "SOFT", "SHARP", "CLEAN", "WET", "DRY", "RUSTY", "DUSTY", "CROOKED", "SHINY", "PLAIN",
    "ANCIENT", "LITTLE", "COLD", "WARM", "HEAVY", "LIGHT", "FULL",
]
PLACE_ADJECTIVES = ["OLD", "SMALL", "LARGE", "QUIET", "DARK", "NARROW", "EMPTY", "ANCIENT",
                    "DISTANT", "NEAREST", "NORTH", "SOUTH", "EAST", "WEST", "HIGH", "BUSY",
                    "LITTLE"]
DEGREE = ["VERY", "RATHER", "QUITE", "TOO", "SO", "ALMOST"]
COLORS_FOR_THINGS = ["GREEN", "RED", "BLUE", "BROWN", "WHITE", "BLACK", "YELLOW", "GRAY"]

# Transitive verbs and the classes of objects they take: T things, P people, A animals, L places.
TRANSITIVE = [
    (("CARRY", "CARRIED"), "T"), (("FIND", "FOUND"), "TPA"), (("OPEN", "OPENED"), "T"),
    (("LIFT", "LIFTED"), "T"), (("DROP", "DROPPED"), "T"), (("HOLD", "HELD"), "T"),
    (("TAKE", "TOOK"), "T"), (("BRING", "BROUGHT"), "T"), (("BUY", "BOUGHT"), "TA"),
    (("SELL", "SOLD"), "TA"), (("MEND", "MENDED"), "T"), (("PAINT", "PAINTED"), "TL"),
    (("WASH", "WASHED"), "TA"), (("FILL", "FILLED"), "T"), (("HIDE", "HID"), "T"),
    (("KEEP", "KEPT"), "TA"), (("LOSE", "LOST"), "T"), (("SHOW", "SHOWED"), "T"),
    (("PULL", "PULLED"), "T"), (("PUSH", "PUSHED"), "T"), (("THROW", "THREW"), "T"),
    (("CATCH", "CAUGHT"), "TA"), (("FETCH", "FETCHED"), "T"), (("BORROW", "BORROWED"), "T"),
    (("BUILD", "BUILT"), "L"), (("BREAK", "BROKE"), "T"), (("FIX", "FIXED"), "T"),
    (("COUNT", "COUNTED"), "TA"), (("FOLLOW", "FOLLOWED"), "PA"), (("WATCH", "WATCHED"), "PA"),
    (("VISIT", "VISITED"), "PL"), (("HELP", "HELPED"), "P"), (("CALL", "CALLED"), "PA"),
    (("MEET", "MET"), "P"), (("SEE", "SAW"), "TPAL"), (("HEAR", "HEARD"), "PA"),
    (("REMEMBER", "REMEMBERED"), "TPL"), (("FORGET", "FORGOT"), "T"), (("LEAVE", "LEFT"), "TL"),
    (("PACK", "PACKED"), "T"), (("WRAP", "WRAPPED"), "T"), (("POLISH", "POLISHED"), "T"),
    (("LOAD", "LOADED"), "T"), (("GUARD", "GUARDED"), "TL"), (("FEED", "FED"), "A"),
    (("CHASE", "CHASED"), "A"), (("GREET", "GREETED"), "P"), (("THANK", "THANKED"), "P"),
    (("WARN", "WARNED"), "P"), (("SEARCH", "SEARCHED"), "L"), (("CROSS", "CROSSED"), "L"),
    (("CLEAN", "CLEANED"), "TL"), (("DRAW", "DREW"), "TAL"), (("ADMIRE", "ADMIRED"), "TPAL"),
    (("EXAMINE", "EXAMINED"), "T"), (("RETURN", "RETURNED"), "T"), (("STEAL", "STOLE"), "T"),
]
READ_VERBS = [(("READ", "READ"), ["LETTER", "BOOK", "MAP", "TICKET"]),
              (("WRITE", "WROTE"), ["LETTER", "BOOK", "POEM", "SONG", "STORY"])]
INTRANSITIVE = [
    ("SLEEP", "SLEPT"), ("LAUGH", "LAUGHED"), ("WAIT", "WAITED"), ("LISTEN", "LISTENED"),
    ("SMILE", "SMILED"), ("SING", "SANG"), ("DANCE", "DANCED"), ("WHISTLE", "WHISTLED"),
    ("SHOUT", "SHOUTED"), ("SIGH", "SIGHED"), ("REST", "RESTED"), ("WORK", "WORKED"),
    ("NOD", "NODDED"), ("PAUSE", "PAUSED"), ("HESITATE", "HESITATED"),
    ("TREMBLE", "TREMBLED"), ("STAY", "STAYED"), ("KNOCK", "KNOCKED"), ("ANSWER", "ANSWERED"),
    ("AGREE", "AGREED"), ("DISAPPEAR", "DISAPPEARED"), ("COUGH", "COUGHED"),
    ("FROWN", "FROWNED"), ("WHISPER", "WHISPERED"), ("SNEEZE", "SNEEZED"), ("YAWN", "YAWNED"),
]
MOTION = [
    ("WALK", "WALKED"), ("RUN", "RAN"), ("HURRY", "HURRIED"), ("WANDER", "WANDERED"),
    ("SAIL", "SAILED"), ("RIDE", "RODE"), ("TRAVEL", "TRAVELED"), ("RETURN", "RETURNED"),
    ("COME", "CAME"), ("GO", "WENT"), ("DRIVE", "DROVE"), ("CREEP", "CREPT"),
    ("CLIMB", "CLIMBED"), ("MARCH", "MARCHED"), ("RUSH", "RUSHED"), ("STROLL", "STROLLED"),
]
PLACE_PREPOSITIONS = [
    "TO", "INTO", "ACROSS", "ALONG", "NEAR", "BEHIND", "BESIDE", "TOWARD", "THROUGH", "PAST",
    "AROUND", "BEYOND", "UP", "DOWN", "OUT OF", "INSIDE", "BY", "AT", "FROM", "OVER",
]
LOCATIVE_PREPOSITIONS = ["NEAR", "BEHIND", "BESIDE", "INSIDE", "BY", "AT", "UNDER", "IN",
                         "ON", "ABOVE", "BELOW", "OUTSIDE"]
TIMES = [
    "IN THE MORNING", "IN THE EVENING", "AT NOON", "AT MIDNIGHT", "BEFORE DAWN",
    "AFTER SUPPER", "ON MONDAY", "ON TUESDAY", "ON WEDNESDAY", "ON THURSDAY", "ON FRIDAY",
    "ON SATURDAY", "ON SUNDAY", "LAST WINTER", "EARLY IN SPRING", "LATE IN AUTUMN",
    "THAT NIGHT", "THE NEXT DAY", "A LONG TIME AGO", "YESTERDAY", "ONCE", "EVERY SUNDAY",
    "DURING THE STORM", "AFTER THE RAIN", "SOON AFTERWARD", "AT LAST", "IN SUMMER",
    "BEFORE BREAKFAST", "ALL AFTERNOON", "THE NIGHT BEFORE", "AT SUNSET", "IN DECEMBER",
    "IN JUNE", "THREE DAYS LATER", "AN HOUR LATER", "THAT SAME WEEK",
]
MANNER = [
    "SLOWLY", "QUICKLY", "QUIETLY", "CAREFULLY", "SUDDENLY", "GENTLY", "PATIENTLY",
    "NERVOUSLY", "HAPPILY", "SADLY", "EAGERLY", "PROUDLY", "SILENTLY", "CHEERFULLY", "CALMLY",
    "BRAVELY", "WEARILY", "POLITELY", "LOUDLY", "SOFTLY",
]
FREQUENCY = ["NEVER", "OFTEN", "ALWAYS", "SOMETIMES", "RARELY", "ALMOST", "NEARLY", "ONCE"]
NUMBERS = ["TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN", "ELEVEN",
           "TWELVE", "TWENTY", "FORTY", "A HUNDRED", "A DOZEN"]
SUBORDINATORS = ["WHEN", "AFTER", "BEFORE", "BECAUSE", "ALTHOUGH", "WHILE", "AS SOON AS",
                 "SINCE", "UNTIL", "ONCE"]
COORDINATORS = ["AND", "BUT", "SO", "AND THEN", "YET"]
REPORT_VERBS = ["SAID", "THOUGHT", "KNEW", "HOPED", "DISCOVERED", "EXPLAINED", "REMEMBERED",
                "NOTICED", "FEARED", "BELIEVED", "DECIDED", "WROTE", "ADMITTED", "LEARNED"]
TELL_VERBS = ["TOLD", "PROMISED", "REMINDED", "ASSURED", "WARNED", "INFORMED"]
MODALS = ["WILL", "MUST", "SHOULD", "COULD", "CAN'T", "WOULD", "MIGHT", "SHALL", "CANNOT",
          "WON'T", "SHOULDN'T", "CAN"]
WEATHER = [
    "THE WIND WAS BLOWING", "IT WAS RAINING", "THE SUN HAD RISEN", "SNOW WAS FALLING",
    "THE MOON WAS FULL", "THE FOG WAS THICK", "THE BELLS WERE RINGING", "NIGHT WAS FALLING",
    "THE STREETS WERE EMPTY", "THE FIRE HAD GONE OUT", "THE CLOCK STRUCK NINE",
    "THE RIVER WAS FROZEN", "THE AIR SMELLED OF BREAD", "THE LAMPS WERE LIT",
]
REPLIES = [
    ["YES"], ["NO"], ["YES", "SIR"], ["NO", "MADAM"], ["OF", "COURSE"], ["THANK", "YOU"],
    ["GOOD", "MORNING"], ["GOOD", "EVENING"], ["GOOD", "NIGHT"], ["VERY", "WELL"],
    ["NOT", "YET"], ["I", "SEE"], ["COME", "HERE"], ["LISTEN"], ["WAIT", "FOR", "ME"],
    ["HURRY", "UP"], ["NEVER", "MIND"], ["ALL", "RIGHT"], ["I", "DON'T", "KNOW"],
    ["WHAT", "A", "PITY"], ["HOW", "STRANGE"], ["PERHAPS"], ["CERTAINLY", "NOT"],
    ["I'M", "SORRY"], ["THAT'S", "TRUE"], ["WELCOME", "HOME"], ["LOOK", "OUT"],
    ["GOOD", "LUCK"], ["WHO'S", "THERE"], ["WHAT", "HAPPENED"], ["IT'S", "LATE"],
    ["SIT", "DOWN"], ["GO", "AWAY"], ["STAY", "HERE"], ["DON'T", "WORRY"],
]
EXCLAMATIONS = ["WELL", "OH", "INDEED", "AH", "LOOK", "LISTEN", "ALAS", "STILL", "MEANWHILE",
                "HOWEVER", "LUCKILY", "SADLY", "STRANGELY", "OF COURSE", "BY EVENING",
                "FOR A MOMENT", "AT FIRST", "IN THE END", "WITHOUT A WORD"]

_VOWEL_START = re.compile(r"^(?:[AEIO]|U(?!NI|SE|SU))")


def vocabulary() -> list[str]:
    """Every word the grammar can produce, sorted (for documentation and tests)."""
    words: set[str] = set()

    def add(item) -> None:
        if isinstance(item, str):
            words.update(item.split())
        else:
            for x in item:
                add(x)

    for table in (PEOPLE, ANIMALS, THINGS, PLACES, NAMES, PERSON_ADJECTIVES,
                  PREDICATE_ADJECTIVES, THING_ADJECTIVES, PLACE_ADJECTIVES, DEGREE,
                  PLACE_PREPOSITIONS, LOCATIVE_PREPOSITIONS, TIMES, MANNER, FREQUENCY,
                  NUMBERS, SUBORDINATORS, COORDINATORS, REPORT_VERBS, TELL_VERBS, MODALS,
                  WEATHER, REPLIES, EXCLAMATIONS, INTRANSITIVE, MOTION):
        add(table)
    for (forms, _) in TRANSITIVE:
        add(forms)
    for (forms, objs) in READ_VERBS:
        add(forms)
        add(objs)
    add(_FUNCTION_WORDS)
    return sorted(words)


_FUNCTION_WORDS = [
    "THE", "A", "AN", "THIS", "THAT", "EVERY", "HIS", "HER", "THEIR", "OUR", "MY", "YOUR",
    "SOME", "MANY", "THESE", "THOSE", "SEVERAL", "FEW", "HE", "SHE", "THEY", "WE", "I", "YOU",
    "IT", "HIM", "THEM", "US", "ME", "WAS", "WERE", "DID", "DIDN'T", "WHY", "WHERE", "WHO",
    "HOW", "WHAT", "WHEN", "PLEASE", "DON'T", "THERE", "NOT", "AND", "OF", "FOR",
    "TOMORROW", "TONIGHT", "AGAIN", "FIRST", "ABOUT", "TO", "NEXT", "SAID", "ASKED",
    "REPLIED", "CRIED", "WHISPERED", "ANSWERED", "LOOKED", "SEEMED", "FELT", "BECAME", "GREW",
    "ONCE", "WEEK", "NIGHT", "FROM", "DISTANT", "NEAREST", "NORTH", "SOUTH", "EAST", "WEST",
    "HIGH", "NOW", "FEW",
]


class _Builder:
    """The grammar. Every method returns a list of tokens."""

    def __init__(self, rng: random.Random):
        self.r = rng

    # -- helpers -----------------------------------------------------------------------------
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    @staticmethod
    def article(next_word: str) -> str:
        return "AN" if _VOWEL_START.match(next_word) else "A"

    # -- noun phrases -------------------------------------------------------------------------
    def noun(self, cls: str) -> tuple[str, str]:
        table = {"P": PEOPLE, "A": ANIMALS, "T": THINGS}[cls]
        return self.pick(table)

    def np(self, cls: str, *, plural: bool | None = None, subject: bool = False,
           indefinite: bool = False) -> tuple[list[str], bool]:
        """A noun phrase of class P (people), A (animals), T (things) or L (places).

        Returns the tokens and whether the phrase is plural.
        """
        if cls == "L":
            return self.place_np(), False
        if cls == "P" and not plural and not indefinite and self.chance(0.25):
            return [self.pick(NAMES)], False
        if plural is None:
            plural = self.chance(0.3)
        sing, plur = self.noun(cls)
        head = plur if plural else sing
        adjs: list[str] = []
        if self.chance(0.45):
            adjs.append(self.pick(PERSON_ADJECTIVES if cls != "T" else THING_ADJECTIVES))
            if cls == "T" and adjs[0] not in COLORS_FOR_THINGS and self.chance(0.2):
                adjs.append(self.pick(COLORS_FOR_THINGS))
        words = adjs + [head]
        if indefinite:
            det = ([self.pick(["SOME", "MANY", "SEVERAL", "A FEW"] + NUMBERS)] if plural
                   else [self.article(words[0])])
            det = det[0].split()
        elif plural:
            det_choice = self.r.random()
            if det_choice < 0.35:
                det = ["THE"]
            elif det_choice < 0.6:
                det = self.pick(NUMBERS).split()
            else:
                det = [self.pick(["SOME", "MANY", "THESE", "THOSE", "SEVERAL", "A FEW",
                                  "THEIR", "OUR", "HIS", "HER"])]
                det = det[0].split()
        else:
            det_choice = self.r.random()
            if det_choice < 0.5:
                det = ["THE"]
            elif det_choice < 0.75:
                det = [self.article(words[0])]
            else:
                det = [self.pick(["THIS", "THAT", "HIS", "HER", "THEIR", "OUR", "MY", "EVERY",
                                  "YOUR"])]
        out = det + words
        if cls == "T" and not subject and self.chance(0.12):
            out += ["OF", "THE", self.pick(PEOPLE)[0]]
        elif cls == "P" and not subject and self.chance(0.1):
            out += ["FROM", "THE", self.pick(PLACES)]
        return out, plural

    def place_np(self) -> list[str]:
        place = self.pick(PLACES)
        words = [place]
        if self.chance(0.35):
            words.insert(0, self.pick(PLACE_ADJECTIVES))
        det = "THE" if self.chance(0.8) else self.pick(["HIS", "HER", "THEIR", "OUR", "MY"])
        return [det] + words

    def subject(self) -> tuple[list[str], bool, str]:
        """A subject: (tokens, plural, class). Pronouns are common, as in read books."""
        x = self.r.random()
        if x < 0.22:
            pron = self.pick(["HE", "SHE", "THEY", "WE", "I", "HE", "SHE"])
            return [pron], pron in ("THEY", "WE"), "P"
        cls = "P" if x < 0.8 else "A"
        toks, plural = self.np(cls, subject=True)
        return toks, plural, cls

    def obj(self, classes: str) -> list[str]:
        cls = self.pick(classes)
        if cls == "P" and self.chance(0.15):
            return [self.pick(["HIM", "HER", "THEM", "US", "ME"])]
        return self.np(cls)[0]

    def place_pp(self, motion: bool) -> list[str]:
        prep = self.pick(PLACE_PREPOSITIONS if motion else LOCATIVE_PREPOSITIONS)
        return prep.split() + self.place_np()

    # -- clauses -------------------------------------------------------------------------------
    def clause(self, time: bool = True) -> list[str]:
        """A past-tense clause with optional modifiers (a time phrase only if ``time``)."""
        subj, plural, cls = self.subject()
        be = "WERE" if plural or subj == ["YOU"] else "WAS"
        kind = self.r.random()
        if kind < 0.36:
            forms, objs = self.pick(TRANSITIVE)
            if cls == "A":
                objs = "".join(c for c in objs if c in "TA") or "T"
            vp = [forms[1]] + self.obj(objs)
            if self.chance(0.3):
                vp += self.place_pp(motion=False)
        elif kind < 0.46 and cls == "P":
            forms, objs = self.pick(READ_VERBS)
            vp = [forms[1]]
            noun = self.pick(objs)
            det = self.pick(["THE", "A", "HIS", "HER", "AN OLD", "A LONG", "A SHORT", "EVERY"])
            if det == "A":
                det = self.article(noun)
            vp += det.split() + [noun]
            if self.chance(0.4):
                vp += ["TO", "THE", self.pick(PEOPLE)[0]] if forms[0] == "READ" else \
                      ["ABOUT", "THE"] + [self.pick(PLACES)]
        elif kind < 0.6:
            forms = self.pick(MOTION)
            vp = [forms[1]] + self.place_pp(motion=True)
        elif kind < 0.72:
            vp = [self.pick(INTRANSITIVE)[1]]
            if self.chance(0.5):
                vp += self.place_pp(motion=False)
        elif kind < 0.84:
            vp = [be]
            if self.chance(0.35):
                vp.append(self.pick(DEGREE))
            vp.append(self.pick(PREDICATE_ADJECTIVES))
            if self.chance(0.3):
                vp += ["AND", self.pick(PREDICATE_ADJECTIVES)]
        elif kind < 0.92:
            vp = [self.pick(["LOOKED", "SEEMED", "FELT", "BECAME", "GREW"]),
                  self.pick(PREDICATE_ADJECTIVES)]
        else:
            # "THERE WAS/WERE ..." existential, with its own subject.
            if self.chance(0.5):
                np, _ = self.np(self.pick("TA"), plural=False, indefinite=True)
                return ["THERE", "WAS"] + np + self.place_pp(motion=False)
            np, _ = self.np(self.pick("TAP"), plural=True, indefinite=True)
            return ["THERE", "WERE"] + np + self.place_pp(motion=False)
        action = kind < 0.72
        pre: list[str] = []
        if self.chance(0.12) and action:
            pre = [self.pick(FREQUENCY)]
        post: list[str] = []
        if self.chance(0.25) and action:
            post.append(self.pick(MANNER))
        if time and self.chance(0.2):
            post += self.pick(TIMES).split()
        return subj + pre + vp + post

    def modal_clause(self) -> list[str]:
        subj = [self.pick(["I", "WE", "YOU", "THEY", "HE", "SHE"])]
        if self.chance(0.3):
            subj, _ = self.np("P", subject=True)
        out = subj + [self.pick(MODALS)]
        if self.chance(0.3):
            out += [self.pick(INTRANSITIVE)[0]]
        elif self.chance(0.1):
            forms, objs = self.pick(READ_VERBS)
            noun = self.pick(objs)
            out += [forms[0], self.article(noun), noun]
        else:
            forms, objs = self.pick(TRANSITIVE)
            out += [forms[0]] + self.obj(objs)
        if self.chance(0.5):
            out += self.pick([["TOMORROW"], ["TONIGHT"], ["AGAIN"], ["BEFORE", "NIGHT"],
                              ["AT", "ONCE"], ["NEXT", "WEEK"], ["IN", "THE", "MORNING"],
                              ["FIRST"], ["SOON"]])
        return out

    def question(self) -> list[str]:
        kind = self.r.random()
        subj, plural, _ = self.subject()
        if kind < 0.3:
            forms, objs = self.pick(TRANSITIVE)
            aux = self.pick([["DID"], ["DIDN'T"], ["WHY", "DID"], ["WHEN", "DID"],
                             ["HOW", "DID"]])
            return aux + subj + [forms[0]] + self.obj(objs) + ["?"]
        if kind < 0.5:
            forms = self.pick(MOTION)
            return ["WHERE", "DID"] + subj + [forms[0]] + ["?"]
        if kind < 0.7:
            forms, objs = self.pick(TRANSITIVE)
            return ["WHO", forms[1]] + self.obj(objs) + ["?"]
        if kind < 0.85:
            sing, plur = self.noun(self.pick("TA"))
            forms, _ = self.pick(TRANSITIVE)
            return ["HOW", "MANY", plur, "DID"] + subj + [forms[0]] + ["?"]
        be = "WERE" if plural else "WAS"
        return [be] + subj + [self.pick(PREDICATE_ADJECTIVES)] + ["?"]

    def command(self) -> list[str]:
        out = []
        if self.chance(0.3):
            out.append(self.pick(["PLEASE", "DON'T", "NOW"]))
        if self.chance(0.25):
            return out + [self.pick(INTRANSITIVE)[0]] + self.place_pp(motion=False)
        forms, objs = self.pick(TRANSITIVE)
        out += [forms[0]] + self.obj(objs)
        if self.chance(0.4):
            out += self.place_pp(motion=False)
        return out

    def reported(self) -> list[str]:
        subj, _, _ = self.subject()
        if self.chance(0.3):
            who = self.obj("P")
            return subj + [self.pick(TELL_VERBS)] + who + ["THAT"] + self.clause()
        return subj + [self.pick(REPORT_VERBS), "THAT"] + self.clause()

    def speech(self) -> list[str]:
        """Quoted speech without quotation marks, as in LibriSpeech transcripts."""
        said = [self.pick(["SAID", "ASKED", "REPLIED", "CRIED", "WHISPERED", "ANSWERED"])]
        speaker, _ = self.np("P", subject=True)
        inner = self.pick([self.modal_clause, self.clause, lambda: self.pick(REPLIES)])()
        if self.chance(0.5):
            return inner + [","] + said + speaker
        return speaker + said + [","] + inner

    # -- sentences ------------------------------------------------------------------------------
    def sentence(self) -> list[str]:
        x = self.r.random()
        if x < 0.06:
            return list(self.pick(REPLIES)) + ["."]
        if x < 0.30:
            return self.clause() + ["."]
        if x < 0.40:
            return self.pick(TIMES).split() + [","] + self.clause(time=False) + ["."]
        if x < 0.52:
            return self.clause() + [","] + self.pick(COORDINATORS).split() + self.clause() + ["."]
        if x < 0.62:
            return (self.pick(SUBORDINATORS).split() + self.clause() + [","] + self.clause()
                    + ["."])
        if x < 0.70:
            return self.reported() + ["."]
        if x < 0.78:
            return self.question()
        if x < 0.83:
            return self.command() + ["."]
        if x < 0.88:
            return self.modal_clause() + ["."]
        if x < 0.93:
            return self.speech() + ["."]
        if x < 0.97:
            return (self.pick(WEATHER).split() + [","] + [self.pick(["AND", "BUT", "SO"])]
                    + self.clause() + ["."])
        return self.pick(EXCLAMATIONS).split() + [","] + self.clause() + ["."]


def random_sentence(rng: random.Random, grammar: str = "book") -> Sentence:
    """One sentence from the grammar (``"book"``, the default, or ``"small"``), drawn with
    ``rng``."""
    return Sentence(tuple(_check_grammar(grammar)(rng).sentence()))


def sentence_near(rng: random.Random, words: int, candidates: int = 24,
                  grammar: str = "book") -> Sentence:
    """The candidate sentence whose word count is nearest ``words``.

    Draws ``candidates`` sentences from ``grammar`` (and, for long targets, joins pairs of
    them) and keeps the first one at the smallest distance, so the result depends only on
    ``rng``'s state.
    """
    if words < 1:
        raise ValueError(f"words must be >= 1, got {words!r}")
    _check_grammar(grammar)
    best: Sentence | None = None
    best_gap = None
    for _ in range(candidates):
        s = random_sentence(rng, grammar)
        if len(s.words) + 3 < words and s.tokens[-1] == ".":
            # Long targets: a second sentence follows, as consecutive lines of a book do.
            s = Sentence(s.tokens + random_sentence(rng, grammar).tokens)
        gap = abs(len(s.words) - words)
        if best_gap is None or gap < best_gap:
            best, best_gap = s, gap
            if gap == 0:
                break
    assert best is not None
    for w in best.words:
        assert _WORD.match(w), w
    return best


# --------------------------------------------------------------------------------------------
# The small grammar: a vocabulary of a few dozen words in five short sentence patterns, for a
# model that has to learn something in minutes on a CPU (``make demo``). Its words are a
# subset of the book grammar's above.

SMALL_NAMES = ["PETER", "MARTHA", "GEORGE", "ALICE", "HENRY", "LUCY"]
SMALL_VERBS = ["FOUND", "SAW", "TOOK", "SOLD", "BOUGHT", "CARRIED"]
SMALL_MOTION = ["WALKED", "RAN", "CAME", "WENT"]
SMALL_NUMBERS = ["TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN"]
SMALL_COLORS = ["RED", "GREEN", "BLUE", "WHITE", "BLACK", "YELLOW"]
SMALL_THINGS = [("APPLE", "APPLES"), ("BOOK", "BOOKS"), ("CUP", "CUPS"), ("HAT", "HATS"),
                ("BOX", "BOXES"), ("KEY", "KEYS"), ("SHOE", "SHOES"), ("BELL", "BELLS")]
SMALL_ANIMALS = [("DOG", "DOGS"), ("CAT", "CATS"), ("HORSE", "HORSES"), ("SHEEP", "SHEEP"),
                 ("GOAT", "GOATS")]
SMALL_PLACES = ["HOUSE", "GARDEN", "RIVER", "MARKET", "SCHOOL", "FOREST"]
SMALL_PREPOSITIONS = ["IN", "NEAR", "BEHIND"]


class _SmallBuilder:
    """The small grammar's five patterns (every method returns a list of tokens)."""

    def __init__(self, rng: random.Random):
        self.r = rng

    def pick(self, seq):
        return self.r.choice(seq)

    def things(self) -> list[str]:
        """``A RED BOX`` or ``THREE BLUE CUPS``."""
        sing, plur = self.pick(SMALL_THINGS)
        color = self.pick(SMALL_COLORS)
        if self.r.random() < 0.3:
            return [_Builder.article(color), color, sing]
        return [self.pick(SMALL_NUMBERS), color, plur]

    def sentence(self) -> list[str]:
        x = self.r.random()
        if x < 0.35:    # PETER FOUND THREE RED APPLES (IN THE GARDEN)
            out = [self.pick(SMALL_NAMES), self.pick(SMALL_VERBS)] + self.things()
            if self.r.random() < 0.4:
                out += [self.pick(SMALL_PREPOSITIONS), "THE", self.pick(SMALL_PLACES)]
            return out + ["."]
        if x < 0.55:    # THE DOG RAN TO THE RIVER
            sing, plur = self.pick(SMALL_ANIMALS)
            subj = (["THE", sing] if self.r.random() < 0.6
                    else [self.pick(SMALL_NUMBERS), plur])
            return subj + [self.pick(SMALL_MOTION), "TO", "THE", self.pick(SMALL_PLACES), "."]
        if x < 0.75:    # ALICE AND HENRY SAW FIVE GOATS
            a, b = self.r.sample(SMALL_NAMES, 2)
            sing, plur = self.pick(SMALL_ANIMALS)
            return [a, "AND", b, self.pick(SMALL_VERBS), self.pick(SMALL_NUMBERS), plur, "."]
        if x < 0.9:     # LUCY WENT TO THE MARKET
            return [self.pick(SMALL_NAMES), self.pick(SMALL_MOTION), "TO", "THE",
                    self.pick(SMALL_PLACES), "."]
        # TWO FIVE NINE SEVEN (a number read out digit by digit)
        return [self.pick(SMALL_NUMBERS) for _ in range(self.r.randint(2, 4))] + ["."]


def small_vocabulary() -> list[str]:
    """Every word the small grammar can produce, sorted."""
    words = set(SMALL_NAMES + SMALL_VERBS + SMALL_MOTION + SMALL_NUMBERS + SMALL_COLORS
                + SMALL_PLACES + SMALL_PREPOSITIONS + ["THE", "A", "AND", "TO"])
    for pair in SMALL_THINGS + SMALL_ANIMALS:
        words.update(pair)
    return sorted(words)


GRAMMARS = {"book": _Builder, "small": _SmallBuilder}


def _check_grammar(grammar: str) -> type:
    if not isinstance(grammar, str):
        raise TypeError(f"grammar must be a str, got {type(grammar).__name__}")
    if grammar not in GRAMMARS:
        raise ValueError(f"grammar must be one of {sorted(GRAMMARS)}, got {grammar!r}")
    return GRAMMARS[grammar]
