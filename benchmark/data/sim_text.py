"""Item text for the synthetic XMarket twin (docs/twin.md, "Items": text from real English words).

Why real words: the content methods embed title + categories + description with a real
pretrained sentence encoder (all-MiniLM-L6-v2 offline, CLIP in the paper, docs/protocol.md 1.4 step 5),
so the planted theme must be readable by such an encoder. Each theme owns a list of words shared
by every domain (a "photography" theme gives photography books, cameras and phone lenses); each
domain adds its own product nouns; brand and filler words dilute. Within a theme an item picks
the words whose (hidden) word vectors are closest to the item's latent, so items that are close
in the latent space also share words. ``text_noise`` swaps theme words for words of a random
other theme and, at half that rate, mislabels the category path.
"""

from __future__ import annotations

import numpy as np

# fmt: off
# (category label, theme words). Words are real English; lists overlap a little on purpose
# (hiking/camping, kids/baby), as real topics do.
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Photography", ("camera", "lens", "photo", "portrait", "landscape", "exposure", "tripod", "shutter", "lighting", "zoom", "aperture", "snapshot")),
    ("Music", ("music", "guitar", "piano", "song", "melody", "rhythm", "chord", "concert", "acoustic", "jazz", "vinyl", "band")),
    ("Fitness", ("fitness", "workout", "exercise", "strength", "cardio", "muscle", "gym", "training", "weights", "endurance", "stamina", "toned")),
    ("Running", ("running", "marathon", "jogging", "pace", "sprint", "stride", "race", "runner", "mileage", "track", "sneaker", "finish")),
    ("Cooking", ("cooking", "recipe", "kitchen", "chef", "meal", "flavor", "spice", "dinner", "skillet", "grill", "sauce", "cuisine")),
    ("Baking", ("baking", "bread", "pastry", "cake", "dough", "oven", "flour", "dessert", "cookie", "sourdough", "frosting", "muffin")),
    ("Travel", ("travel", "journey", "passport", "luggage", "vacation", "adventure", "map", "destination", "airport", "itinerary", "tourist", "voyage")),
    ("Video Games", ("gaming", "console", "controller", "arcade", "quest", "player", "joystick", "esports", "gamer", "level", "multiplayer", "pixel")),
    ("Children", ("children", "kids", "toddler", "playful", "bedtime", "alphabet", "cartoon", "preschool", "picture", "nursery", "rhymes", "colorful")),
    ("Baby Care", ("baby", "infant", "newborn", "diaper", "stroller", "lullaby", "crib", "feeding", "nursing", "monitor", "pacifier", "swaddle")),
    ("Hiking", ("hiking", "trail", "mountain", "backpack", "compass", "summit", "wilderness", "outdoor", "trek", "canyon", "ridge", "boots")),
    ("Camping", ("camping", "tent", "campfire", "lantern", "sleeping", "forest", "cabin", "survival", "firewood", "cooler", "hammock", "stove")),
    ("Cycling", ("cycling", "bicycle", "bike", "ride", "pedal", "helmet", "wheel", "cyclist", "gear", "saddle", "spokes", "peloton")),
    ("Automotive", ("car", "driving", "road", "vehicle", "engine", "dashboard", "highway", "motor", "garage", "mechanic", "tire", "truck")),
    ("Home Office", ("office", "desk", "productivity", "meeting", "laptop", "workspace", "typing", "ergonomic", "monitor", "printer", "schedule", "remote")),
    ("Business", ("business", "leadership", "management", "strategy", "marketing", "startup", "entrepreneur", "sales", "negotiation", "company", "growth", "executive")),
    ("Personal Finance", ("money", "investing", "stock", "budget", "wealth", "savings", "retirement", "trading", "portfolio", "income", "debt", "tax")),
    ("History", ("history", "ancient", "empire", "civilization", "medieval", "heritage", "dynasty", "archive", "century", "revolution", "kings", "historical")),
    ("Science", ("science", "physics", "chemistry", "experiment", "laboratory", "molecule", "research", "theory", "discovery", "atom", "energy", "scientist")),
    ("Astronomy", ("space", "astronomy", "telescope", "galaxy", "planet", "star", "orbit", "rocket", "moon", "cosmos", "nebula", "astronaut")),
    ("Gardening", ("garden", "plants", "flowers", "soil", "seeds", "gardening", "greenhouse", "bloom", "vegetable", "herbs", "compost", "lawn")),
    ("Dogs", ("dog", "puppy", "leash", "canine", "training", "bark", "kennel", "paw", "retriever", "collar", "fetch", "breed")),
    ("Cats", ("cat", "kitten", "feline", "whiskers", "purr", "litter", "tabby", "meow", "scratching", "catnip", "claws", "furry")),
    ("Ocean", ("ocean", "sea", "marine", "fish", "coral", "reef", "underwater", "diving", "aquarium", "tide", "shark", "whale")),
    ("Fashion", ("fashion", "style", "outfit", "wardrobe", "designer", "trend", "elegant", "chic", "runway", "glamour", "accessories", "boutique")),
    ("Painting", ("painting", "art", "canvas", "brush", "watercolor", "sketch", "drawing", "palette", "gallery", "artist", "acrylic", "portrait")),
    ("Woodworking", ("woodworking", "tools", "carpentry", "workshop", "saw", "drill", "lumber", "build", "repair", "hammer", "chisel", "craftsman")),
    ("Sleep", ("sleep", "rest", "dream", "relaxation", "insomnia", "night", "pillow", "bedtime", "snoring", "nap", "mattress", "soothing")),
    ("Yoga", ("yoga", "meditation", "mindfulness", "breathing", "zen", "balance", "stretch", "wellness", "calm", "pose", "chakra", "spirit")),
    ("Coffee", ("coffee", "espresso", "brew", "barista", "roast", "latte", "bean", "cafe", "mug", "grinder", "caffeine", "cappuccino")),
    ("Wine", ("wine", "vineyard", "cocktail", "bar", "sommelier", "vintage", "grape", "cellar", "whiskey", "brewery", "tasting", "bottle")),
    ("Programming", ("programming", "code", "software", "developer", "python", "algorithm", "computer", "data", "linux", "database", "coding", "server")),
    ("Security", ("security", "privacy", "encryption", "password", "protection", "lock", "hacker", "safe", "shield", "surveillance", "alarm", "guard")),
    ("Winter Sports", ("ski", "snow", "winter", "snowboard", "ice", "frost", "alpine", "slope", "skating", "blizzard", "sled", "glacier")),
    ("Beach", ("beach", "summer", "sun", "surf", "sand", "tropical", "swim", "waves", "island", "sunscreen", "palm", "poolside")),
    ("Wedding", ("wedding", "bride", "marriage", "ceremony", "romance", "bouquet", "anniversary", "groom", "engagement", "vows", "bridal", "honeymoon")),
    ("School", ("school", "student", "study", "classroom", "homework", "exam", "teacher", "college", "lesson", "textbook", "campus", "notebook")),
    ("Military", ("military", "army", "soldier", "battle", "tactical", "navy", "combat", "veteran", "mission", "infantry", "war", "regiment")),
    ("Aviation", ("aviation", "airplane", "pilot", "flight", "aircraft", "jet", "cockpit", "wings", "runway", "propeller", "altitude", "hangar")),
    ("Trains", ("train", "railway", "locomotive", "station", "rail", "steam", "railroad", "conductor", "carriage", "depot", "freight", "tracks")),
    ("Sailing", ("sailing", "boat", "yacht", "sail", "harbor", "captain", "anchor", "nautical", "marina", "kayak", "canoe", "paddle")),
    ("Horses", ("horse", "riding", "equestrian", "pony", "stable", "ranch", "rodeo", "cowboy", "stallion", "mare", "gallop", "bridle")),
    ("Birds", ("birds", "birdwatching", "feathers", "owl", "eagle", "nest", "songbird", "binoculars", "hawk", "parrot", "sparrow", "migration")),
    ("Weather", ("weather", "storm", "rain", "forecast", "thunder", "cloud", "wind", "climate", "hurricane", "tornado", "lightning", "barometer")),
    ("Mystery", ("mystery", "detective", "crime", "murder", "clue", "investigation", "suspect", "thriller", "secret", "evidence", "killer", "sleuth")),
    ("Romance", ("romance", "love", "heart", "passion", "kiss", "desire", "affair", "sweetheart", "valentine", "lovers", "flirt", "devotion")),
    ("Fantasy", ("fantasy", "dragon", "magic", "wizard", "kingdom", "sword", "castle", "legend", "sorcery", "elves", "enchanted", "myth")),
    ("Science Fiction", ("robot", "alien", "future", "starship", "android", "cyborg", "dystopia", "spaceship", "interstellar", "laser", "mutant", "colony")),
    ("Horror", ("horror", "ghost", "haunted", "vampire", "zombie", "nightmare", "dark", "spooky", "creepy", "monster", "curse", "skeleton")),
    ("Fishing", ("fishing", "bass", "trout", "lure", "reel", "angler", "tackle", "river", "lake", "bait", "rod", "catfish")),
    ("Hunting", ("hunting", "deer", "rifle", "hunter", "camouflage", "wildlife", "scope", "bow", "archery", "elk", "decoy", "game")),
    ("Golf", ("golf", "golfer", "putter", "swing", "tee", "caddie", "course", "birdie", "fairway", "clubs", "green", "handicap")),
    ("Soccer", ("soccer", "football", "goal", "stadium", "team", "league", "striker", "match", "ball", "coach", "referee", "kickoff")),
    ("Basketball", ("basketball", "hoop", "dunk", "court", "rebound", "playoff", "jersey", "dribble", "slam", "arena", "shooter", "basket")),
    ("Faith", ("faith", "prayer", "bible", "church", "spiritual", "worship", "devotional", "grace", "gospel", "scripture", "blessing", "hymn")),
    ("Self Help", ("motivation", "success", "habits", "confidence", "happiness", "mindset", "goals", "inspiration", "productivity", "purpose", "growth", "positive")),
    ("Movies", ("movie", "film", "cinema", "director", "hollywood", "screen", "theater", "actor", "popcorn", "blockbuster", "projector", "documentary")),
    ("Smart Home", ("smart", "home", "automation", "thermostat", "voice", "assistant", "wifi", "sensor", "bulb", "doorbell", "plug", "hub")),
    ("Languages", ("language", "spanish", "french", "vocabulary", "grammar", "fluent", "translation", "german", "phrases", "dictionary", "speaking", "pronunciation")),
    ("Medicine", ("medical", "nurse", "doctor", "anatomy", "clinical", "hospital", "patient", "health", "pharmacy", "surgery", "diagnosis", "stethoscope")),
    ("Psychology", ("psychology", "mind", "brain", "behavior", "emotion", "therapy", "cognitive", "anxiety", "personality", "memory", "stress", "healing")),
    ("Swimming", ("swimming", "pool", "swimmer", "goggles", "lap", "stroke", "waterproof", "splash", "dive", "lifeguard", "snorkel", "aquatic")),
    ("Holidays", ("christmas", "holiday", "party", "gift", "festive", "celebration", "santa", "halloween", "birthday", "ornament", "snowman", "decorations")),
    ("Knitting", ("knitting", "yarn", "crochet", "sewing", "quilt", "needle", "pattern", "fabric", "stitch", "embroidery", "thread", "wool")),
)

DOMAIN_NOUNS: dict[str, tuple[str, ...]] = {
    "Books": ("Guide", "Handbook", "Companion", "Workbook", "Journal", "Novel", "Story", "Primer", "Essentials", "Encyclopedia", "Memoir", "Collection", "Manual", "Atlas", "Anthology", "Field Guide"),
    "Electronics": ("Speaker", "Headphones", "Camera", "Adapter", "Cable", "Monitor", "Keyboard", "Mouse", "Tablet", "Projector", "Radio", "Router", "Smartwatch", "Controller", "Webcam", "Microphone", "Hard Drive", "Earbuds", "Tracker", "Display"),
    "Cell_Phones_and_Accessories": ("Phone Case", "Screen Protector", "Charger", "Car Mount", "Charging Cable", "Wireless Earbuds", "Phone Grip", "Stylus", "Armband", "Lens Kit", "Wallet Case", "Power Bank", "Selfie Stick", "Phone Holder", "Wireless Charger", "Phone Strap"),
}

DOMAIN_PATHS: dict[str, tuple[tuple[str, ...], ...]] = {
    # XMarket's sample shows Electronics paths starting with the store name and Books paths
    # without it (docs/protocol.md 1.3); the twin copies that asymmetry.
    "Books": ((),),
    "Electronics": (("Electronics", "Accessories & Supplies"), ("Electronics", "Portable Audio & Video"), ("Electronics", "Computers & Accessories"), ("Electronics", "Camera & Photo")),
    "Cell_Phones_and_Accessories": (("Cell Phones & Accessories", "Accessories"), ("Cell Phones & Accessories", "Cases, Holsters & Sleeves"), ("Cell Phones & Accessories", "Chargers & Power Adapters")),
}

BRAND_HEADS = ("Blue", "North", "Silver", "Bright", "Swift", "Golden", "Iron", "Maple", "Summit", "River", "Stone", "Crystal", "Red", "Green", "Royal", "Urban", "Nova", "Pacific", "Arctic", "Eagle")
BRAND_TAILS = ("Peak", "Wave", "Line", "Works", "Field", "Gear", "Craft", "Point", "Light", "Forge", "Bay", "Star", "Path", "Ridge", "Tech", "House", "Press", "Books", "Labs", "Co")
PUBLISHER_TAILS = ("Press", "Books", "House", "Publishing", "Editions")

ADJECTIVES = ("Complete", "Essential", "Ultimate", "Practical", "Classic", "Modern", "Premium", "Compact", "Portable", "Deluxe", "Simple", "Advanced", "Professional", "Everyday", "Original", "New")

FILLER_SENTENCES = (
    "Makes a great gift for friends and family.",
    "Ships in a protective box.",
    "Backed by a one year warranty and friendly customer support.",
    "Designed to last and easy to use every day.",
    "Satisfaction guaranteed or your money back.",
    "Lightweight and easy to carry wherever you go.",
    "Thousands of happy customers recommend it.",
    "Please check the size chart before ordering.",
    "Available in several colors and sizes.",
    "Package contents may vary slightly from the picture.",
    "A popular choice at an affordable price.",
    "Read the instructions carefully before first use.",
)

MATERIALS = ("aluminum", "silicone", "leather", "plastic", "steel", "fabric", "glass", "bamboo")
# fmt: on

N_THEMES_AVAILABLE = len(THEMES)


def _title_case(word: str) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in word.split(" "))


def _plural(noun: str) -> str:
    """'Phone Case' -> 'Phone Cases', 'Story' -> 'Stories', 'Earbuds' stays."""
    if noun.endswith("s"):
        return noun
    if noun.endswith("y") and noun[-2:-1] not in ("a", "e", "i", "o", "u"):
        return noun[:-1] + "ies"
    if noun.endswith(("h", "x")):
        return noun + "es"
    return noun + "s"


def choose_theme_words(
    latent: np.ndarray, word_vecs: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Pick ``n`` distinct word indices per item: Gumbel-top-n over latent . word-vector scores.

    latent [B, d], word_vecs [W, d] (one theme). Items close in latent share words, so a text
    encoder sees within-theme similarity, not only the theme.
    """
    scores = latent @ word_vecs.T  # [B, W]
    scores = scores + rng.gumbel(size=scores.shape)
    return np.argsort(-scores, axis=1)[:, :n]


def make_texts(
    *,
    asin: np.ndarray,
    domain_names: tuple[str, ...],
    domain: np.ndarray,
    theme: np.ndarray,
    theme_ids: np.ndarray,
    latent: np.ndarray,
    word_vecs: np.ndarray,
    text_noise: float,
    rng: np.random.Generator,
) -> dict[str, list]:
    """Title, categories, description and feature bullets for every item.

    ``theme_ids[t]`` indexes :data:`THEMES` for the simulator's theme ``t``; ``word_vecs``
    [n_themes, 12, d]. Per-item string assembly is a Python loop over items (not interactions),
    which is fine at paper scale (~140k items).
    """
    n = len(asin)
    n_words = word_vecs.shape[1]
    n_themes = len(theme_ids)
    picks = np.zeros((n, 6), dtype=np.int64)
    for t in range(n_themes):
        idx = np.flatnonzero(theme == t)
        if len(idx):
            picks[idx] = choose_theme_words(latent[idx], word_vecs[t], 6, rng)
    # Noise: a theme-word slot is replaced by a word of a random other theme.
    noisy = rng.random((n, 6)) < text_noise
    other_theme = (theme[:, None] + rng.integers(1, max(n_themes, 2), size=(n, 6))) % n_themes
    other_word = rng.integers(0, n_words, size=(n, 6))
    word_theme = np.where(noisy, other_theme, theme[:, None])
    word_idx = np.where(noisy, other_word, picks)
    mislabel = rng.random(n) < text_noise / 2
    cat_theme = np.where(mislabel, (theme + rng.integers(1, max(n_themes, 2), size=n)) % n_themes, theme)

    r = rng.integers(0, 1 << 30, size=(n, 12))  # per-item template choices
    n_fill = len(FILLER_SENTENCES)
    titles: list[str] = []
    categories: list[list[str]] = []
    descriptions: list[str] = []
    features: list[list[str]] = []
    brands: list[str] = []
    for i in range(n):
        dname = domain_names[domain[i]]
        words = [THEMES[theme_ids[word_theme[i, j]]][1][word_idx[i, j]] for j in range(6)]
        w = [_title_case(x) for x in words]
        label = THEMES[theme_ids[cat_theme[i]]][0]
        nouns = DOMAIN_NOUNS[dname]
        noun = nouns[r[i, 0] % len(nouns)]
        adj = ADJECTIVES[r[i, 1] % len(ADJECTIVES)]
        head = BRAND_HEADS[r[i, 2] % len(BRAND_HEADS)]
        f0 = r[i, 3] % n_fill  # three distinct filler sentences
        f1 = (f0 + 1 + r[i, 4] % (n_fill - 1)) % n_fill
        f2 = next(
            k
            for k in ((f1 + 1 + r[i, 5] % (n_fill - 2) + j) % n_fill for j in range(n_fill))
            if k not in (f0, f1)
        )
        fill = [FILLER_SENTENCES[f0], FILLER_SENTENCES[f1], FILLER_SENTENCES[f2]]
        material = MATERIALS[r[i, 6] % len(MATERIALS)]
        if dname == "Books":
            brand = head + " " + PUBLISHER_TAILS[r[i, 7] % len(PUBLISHER_TAILS)]
            form = r[i, 8] % 3
            if form == 0:
                title = f"The {w[0]} {noun}: {w[1]}, {w[2]} and {w[3]}"
            elif form == 1:
                title = f"{w[0]} and {w[1]}: {adj} {w[2]} {noun}"
            else:
                title = f"{adj} {w[0]} {w[1]} {noun}"
            cats = [
                label,
                f"{_title_case(words[1])} {_plural(noun)}" if r[i, 9] % 2 else f"{label} {_plural(noun)}",
            ]
            desc = (
                f"{title} is a {adj.lower()} {noun.lower()} about {words[0]}, {words[1]} and {words[4]}. "
                f"{fill[0]} Readers who love {words[2]} and {words[5]} will find plenty here. {fill[1]} "
                f"Published by {brand}. {fill[2]}"
            )
            feats: list[str] = []
        else:
            brand = head + BRAND_TAILS[r[i, 7] % len(BRAND_TAILS)]
            form = r[i, 8] % 3
            if form == 0:
                title = f"{brand} {w[0]} {w[1]} {noun}"
            elif form == 1:
                title = f"{brand} {adj} {noun} for {w[0]} and {w[1]}"
            else:
                title = f"{brand} {w[0]} {noun}, {adj} {w[1]} Edition"
            path = DOMAIN_PATHS[dname][r[i, 9] % len(DOMAIN_PATHS[dname])]
            cats = [*path, label, _plural(noun)]
            desc = (
                f"The {brand} {noun.lower()} brings {words[0]} and {words[1]} together in a {adj.lower()} {material} design. "
                f"{fill[0]} Ideal for {words[2]}, {words[4]} and everyday use. {fill[1]} {fill[2]}"
            )
            feats = [
                f"{adj} {material} build made for {words[0]} fans",
                f"Works great for {words[2]} and {words[5]}",
                fill[0].rstrip("."),
            ][: 2 + r[i, 10] % 2]
        titles.append(title)
        categories.append(cats)
        descriptions.append(desc)
        features.append(feats)
        brands.append(brand)
    return {
        "title": titles,
        "categories": categories,
        "description": descriptions,
        "features": features,
        "brand": brands,
    }
