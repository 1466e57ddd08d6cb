//! Synthetic data for demos and benchmarks: `whatsapp-mcp-stream demo-data`.
//!
//! Owns: a realistic, deterministic store generator. Must not: write except through the write
//! rules of `writes.rs` and the writer (`Store::write`), so that ingest is measured as it runs
//! in the server.
//!
//! What it makes: multilingual text (English, German, French, Spanish, Russian, Greek, Arabic,
//! Japanese, Chinese, emoji); about 10% group chats with subjects and 5–80 participants, some of
//! them admins; direct chats with contacts (names, push names, phone numbers in several
//! countries); LID↔phone pairs for about 30% of people, with some direct chats and group
//! memberships under the LID; media references on about 8% of messages (captioned images, voice
//! notes, documents); timestamps over the year before today (UTC midnight), Zipf-like chat
//! activity with bursts, replies (`quotedId`) and reactions. A fixed seed and a tiny xorshift
//! generator make it deterministic: two runs on the same day produce the same store.
//!
//! Messages go to the writer in jobs of [`BATCH`] with a few jobs in flight, so the writer's
//! group commit sees a steady queue, as during a history sync.

use super::model::MediaRef;
use super::writes::{self, ChatUpdate, ContactUpdate, GroupUpdate, NewMessage};
use super::{Result, Store, StoreError};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

/// Messages per write job.
const BATCH: usize = 10_000;
/// Write jobs queued at once (the writer merges what queues during a commit).
const IN_FLIGHT: usize = 2;
const SEED: u64 = 0x005E_ED0F_DA7A_2024;
const DAY_MS: u64 = 86_400_000;
/// Our own account in the demo store.
const OWN_NUMBER: &str = "447700900000";

/// xorshift64*: small, fast, good enough for synthetic data.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
    fn index(&mut self, n: usize) -> usize {
        self.below(n.max(1) as u64) as usize
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Zipf-like (s ≈ 1) in `0..n`: rank r has probability ∝ log((r+2)/(r+1)).
    fn zipf(&mut self, n: usize) -> usize {
        let r = ((n as f64 + 1.0).powf(self.unit()) - 1.0) as usize;
        r.min(n.saturating_sub(1))
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
}

/// A bijective mix of a counter (unique ids from unique counters).
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// One language's material.
struct Lang {
    /// Country calling code and mobile prefix for its phone numbers.
    prefix: &'static str,
    first: &'static [&'static str],
    last: &'static [&'static str],
    /// Family name first, no space (Chinese), or with a space (Japanese).
    family_first: Option<&'static str>,
    phrases: &'static [&'static str],
    words: &'static [&'static str],
    /// Words are written without spaces (Chinese, Japanese).
    no_spaces: bool,
    subjects: &'static [&'static str],
    documents: &'static [&'static str],
    weight: u32,
}

const LANGS: &[Lang] = &[
    Lang {
        prefix: "447911",
        first: &[
            "Alice",
            "James",
            "Olivia",
            "Noah",
            "Emma",
            "Liam",
            "Sophie",
            "Oliver",
            "Charlotte",
            "Harry",
            "Amelia",
            "George",
        ],
        last: &[
            "Smith", "Johnson", "Brown", "Taylor", "Wilson", "Davies", "Evans", "Walker",
            "O'Brien", "Clarke",
        ],
        family_first: None,
        phrases: &[
            "Are we still on for dinner tonight?",
            "Running 10 minutes late, sorry!",
            "Can you send me the address?",
            "Happy birthday! Have a great day",
            "Did you see the match last night?",
            "I'll call you after the meeting",
            "Thanks so much for your help",
            "The train is delayed again",
            "Let's meet at the café near the station",
            "Don't forget to bring the documents",
            "What time does the concert start?",
            "Good morning! How did you sleep?",
            "I just landed, see you soon",
            "Can we move the call to Thursday?",
        ],
        words: &[
            "time",
            "meeting",
            "tomorrow",
            "today",
            "weekend",
            "dinner",
            "lunch",
            "coffee",
            "work",
            "home",
            "train",
            "flight",
            "ticket",
            "photo",
            "birthday",
            "party",
            "project",
            "report",
            "invoice",
            "deadline",
            "doctor",
            "kids",
            "school",
            "weather",
            "rain",
            "beach",
            "holiday",
            "football",
            "match",
            "music",
            "book",
            "recipe",
            "garden",
            "car",
            "keys",
            "money",
            "rent",
            "shopping",
            "groceries",
            "movie",
        ],
        no_spaces: false,
        subjects: &[
            "Family 🏡",
            "Book club 📚",
            "Office team",
            "Football Sunday ⚽",
            "Flat 3B",
            "Trip to Lisbon ✈️",
            "Parents class 4",
        ],
        documents: &["Quarterly report.pdf", "Tickets.pdf", "presentation.pptx"],
        weight: 28,
    },
    Lang {
        prefix: "49151",
        first: &[
            "Jürgen",
            "Björn",
            "Jörg",
            "Günther",
            "Lena",
            "Sören",
            "Käthe",
            "Jana",
            "Lukas",
            "Maximilian",
            "Leonie",
            "Jürgen",
        ],
        last: &[
            "Müller",
            "Schröder",
            "Größ",
            "Weiß",
            "Schäfer",
            "Köhler",
            "Krämer",
            "Hoffmann",
            "Strauß",
            "Becker",
        ],
        family_first: None,
        phrases: &[
            "Bist du heute Abend zu Hause?",
            "Ich komme etwas später, der Zug hat Verspätung",
            "Schöne Grüße aus München!",
            "Wir treffen uns um acht an der Straße vor dem Büro",
            "Kannst du mir bitte die Unterlagen schicken?",
            "Alles Gute zum Geburtstag! 🎉",
            "Das Wetter ist heute wunderschön",
            "Grüß Gott, wie geht's dir?",
            "Hast du die Rechnung schon bezahlt?",
            "Ich freue mich auf das Wochenende",
            "Die Brötchen sind im Ofen",
            "Fußball am Sonntag? ⚽",
            "Vielen Dank für die schönen Fotos",
        ],
        words: &[
            "Straße",
            "Größe",
            "Grüße",
            "Mädchen",
            "Bäckerei",
            "Frühstück",
            "Übung",
            "Fußball",
            "Käse",
            "Brötchen",
            "Rechnung",
            "Termin",
            "Wochenende",
            "Geburtstag",
            "Arbeit",
            "Zug",
            "Bahnhof",
            "Kinder",
            "Schule",
            "Wetter",
            "Urlaub",
            "Haus",
            "Garten",
            "Auto",
            "Schlüssel",
            "Geld",
            "Miete",
            "Einkauf",
            "Kühlschrank",
            "Müll",
            "heißen",
            "schön",
            "morgen",
            "heute",
            "später",
            "natürlich",
            "gemütlich",
            "Äpfel",
            "Öffnungszeiten",
        ],
        no_spaces: false,
        subjects: &[
            "Familie Müller 🏡",
            "Fußball am Sonntag ⚽",
            "WG Küche",
            "Klassentreffen 2005",
            "Grillabend 🍖",
            "Straßenfest Planung",
        ],
        documents: &["Rechnung_März.pdf", "Mietvertrag.pdf", "Übersicht.xlsx"],
        weight: 15,
    },
    Lang {
        prefix: "33612",
        first: &[
            "Chloé",
            "Élodie",
            "Hélène",
            "François",
            "Jérôme",
            "Léa",
            "Zoé",
            "Noël",
            "Amélie",
            "Théo",
            "Loïc",
            "Inès",
        ],
        last: &[
            "Lefèvre",
            "Dubois",
            "Moreau",
            "Girard",
            "Gauthier",
            "Bérard",
            "Lemaître",
            "Fournier",
            "Chevalier",
            "Rousseau",
        ],
        family_first: None,
        phrases: &[
            "On se retrouve au café à midi ?",
            "Je suis en retard, désolé !",
            "Bon anniversaire ! Passe une belle journée",
            "Tu as vu le match hier soir ?",
            "Merci beaucoup pour ton aide",
            "Le train est encore en retard",
            "À demain, bisous",
            "Où est-ce qu'on dîne ce soir ?",
            "J'ai oublié mes clés chez toi",
            "Quelle météo aujourd'hui ! ☀️",
            "Ça marche, à tout à l'heure",
            "Les enfants sont déjà à l'école",
        ],
        words: &[
            "café",
            "thé",
            "école",
            "élève",
            "été",
            "hôpital",
            "fenêtre",
            "forêt",
            "garçon",
            "français",
            "déjà",
            "très",
            "voilà",
            "réunion",
            "rendez-vous",
            "anniversaire",
            "travail",
            "maison",
            "gâteau",
            "crème",
            "pâtes",
            "marché",
            "église",
            "théâtre",
            "cinéma",
            "vacances",
            "plage",
            "voiture",
            "clés",
            "argent",
            "loyer",
            "courses",
            "météo",
            "demain",
            "aujourd'hui",
            "bientôt",
            "Noël",
            "Pâques",
        ],
        no_spaces: false,
        subjects: &[
            "Équipe projet Lyon",
            "Famille Lefèvre",
            "Soirée crêpes 🥞",
            "Vacances été",
            "Parents d'élèves CM2",
        ],
        documents: &["Contrat_signé.pdf", "Facture_été.pdf", "Menu_Noël.docx"],
        weight: 10,
    },
    Lang {
        prefix: "34612",
        first: &[
            "José", "María", "Lucía", "Andrés", "Martín", "Sofía", "Jesús", "Iñaki", "Begoña",
            "Álvaro",
        ],
        last: &[
            "García",
            "Fernández",
            "González",
            "Rodríguez",
            "López",
            "Martínez",
            "Sánchez",
            "Pérez",
            "Muñoz",
            "Gómez",
        ],
        family_first: None,
        phrases: &[
            "¿Quedamos mañana a las diez?",
            "¡Feliz cumpleaños! 🎂",
            "Llego tarde, lo siento",
            "¿Viste el partido anoche?",
            "Muchas gracias por todo",
            "El niño está en la escuela",
            "¿Dónde está la estación?",
            "Nos vemos en la playa",
        ],
        words: &[
            "mañana",
            "niño",
            "año",
            "señor",
            "español",
            "corazón",
            "canción",
            "jamón",
            "fútbol",
            "partido",
            "trabajo",
            "casa",
            "escuela",
            "cumpleaños",
            "fiesta",
            "playa",
            "vacaciones",
            "comida",
            "cena",
            "café",
            "tren",
            "coche",
            "llaves",
            "dinero",
            "compras",
            "película",
            "música",
            "libro",
            "lluvia",
            "sol",
        ],
        no_spaces: false,
        subjects: &[
            "Familia García",
            "Fútbol los martes",
            "Viaje a Sevilla",
            "Cumpleaños de Lucía 🎂",
        ],
        documents: &["Presupuesto_año.pdf", "Billetes.pdf"],
        weight: 9,
    },
    Lang {
        prefix: "7916",
        first: &[
            "Дмитрий",
            "Анна",
            "Сергей",
            "Ольга",
            "Алексей",
            "Наталья",
            "Иван",
            "Екатерина",
            "Михаил",
            "Юлия",
        ],
        last: &[
            "Иванов",
            "Смирнов",
            "Кузнецов",
            "Попов",
            "Соколов",
            "Лебедев",
            "Козлов",
            "Новиков",
            "Морозов",
            "Волков",
        ],
        family_first: None,
        phrases: &[
            "Привет! Как дела?",
            "Спасибо большое за помощь",
            "Я опаздываю, извини",
            "Увидимся завтра вечером",
            "С днём рождения! 🎉",
            "Ты видел вчерашний матч?",
            "Позвони мне, когда освободишься",
            "Поезд опять задерживается",
            "Где встречаемся?",
            "Отличные фотографии!",
            "Не забудь купить хлеб и молоко",
            "Хорошего дня ☀️",
        ],
        words: &[
            "привет",
            "спасибо",
            "пожалуйста",
            "завтра",
            "сегодня",
            "вечером",
            "работа",
            "встреча",
            "поезд",
            "билет",
            "дом",
            "дача",
            "семья",
            "дети",
            "школа",
            "погода",
            "дождь",
            "снег",
            "отпуск",
            "море",
            "футбол",
            "матч",
            "музыка",
            "книга",
            "рецепт",
            "машина",
            "ключи",
            "деньги",
            "магазин",
            "хлеб",
            "молоко",
            "чай",
            "кофе",
            "фотографии",
            "подарок",
            "праздник",
            "ёлка",
            "Москва",
            "Петербург",
        ],
        no_spaces: false,
        subjects: &[
            "Семья",
            "Книжный клуб 📚",
            "Дача 2024",
            "Работа — отдел продаж",
        ],
        documents: &["Отчёт.pdf", "Договор.docx"],
        weight: 10,
    },
    Lang {
        prefix: "30694",
        first: &[
            "Γιώργος",
            "Μαρία",
            "Νίκος",
            "Ελένη",
            "Κώστας",
            "Σοφία",
            "Δημήτρης",
            "Κατερίνα",
            "Γιάννης",
            "Αθηνά",
        ],
        last: &[
            "Παπαδόπουλος",
            "Παπαδοπούλου",
            "Νικολάου",
            "Γεωργίου",
            "Οικονόμου",
            "Καραγιάννης",
            "Βλάχος",
            "Ιωάννου",
        ],
        family_first: None,
        phrases: &[
            "Καλημέρα! Τι κάνεις;",
            "Ευχαριστώ πολύ για όλα",
            "Θα αργήσω λίγο, συγγνώμη",
            "Χρόνια πολλά! 🎂",
            "Τα λέμε αύριο το βράδυ",
            "Πού θα βρεθούμε;",
            "Πάμε για καφέ;",
            "Ο καιρός είναι υπέροχος σήμερα",
        ],
        words: &[
            "καλημέρα",
            "ευχαριστώ",
            "αύριο",
            "σήμερα",
            "βράδυ",
            "δουλειά",
            "συνάντηση",
            "τρένο",
            "σπίτι",
            "οικογένεια",
            "παιδιά",
            "σχολείο",
            "καιρός",
            "θάλασσα",
            "διακοπές",
            "ποδόσφαιρο",
            "μουσική",
            "βιβλίο",
            "αυτοκίνητο",
            "κλειδιά",
            "λεφτά",
            "καφές",
            "φαγητό",
            "γιορτή",
            "Αθήνα",
            "Θεσσαλονίκη",
            "νησί",
            "παραλία",
            "φίλος",
            "φίλοι",
        ],
        no_spaces: false,
        subjects: &["Ομάδα Πεζοπορίας", "Οικογένεια", "Διακοπές στη Νάξο 🏝️"],
        documents: &["Τιμολόγιο.pdf"],
        weight: 5,
    },
    Lang {
        prefix: "97150",
        first: &[
            "محمد",
            "فاطمة",
            "أحمد",
            "مريم",
            "علي",
            "نور",
            "يوسف",
            "ليلى",
            "عمر",
            "سارة",
        ],
        last: &[
            "الحسن",
            "العلي",
            "منصور",
            "حداد",
            "الخطيب",
            "سليمان",
            "ناصر",
            "عباس",
        ],
        family_first: None,
        phrases: &[
            "مرحبا! كيف حالك؟",
            "شكرا جزيلا على مساعدتك",
            "سأتأخر قليلا، آسف",
            "عيد ميلاد سعيد! 🎉",
            "نلتقي غدا مساء",
            "أين نلتقي؟",
            "رمضان كريم 🌙",
            "الطقس جميل اليوم",
        ],
        words: &[
            "مرحبا",
            "شكرا",
            "غدا",
            "اليوم",
            "مساء",
            "صباح",
            "العمل",
            "اجتماع",
            "القطار",
            "البيت",
            "العائلة",
            "الأطفال",
            "المدرسة",
            "الطقس",
            "البحر",
            "عطلة",
            "كرة",
            "القدم",
            "الموسيقى",
            "كتاب",
            "سيارة",
            "المفاتيح",
            "المال",
            "قهوة",
            "شاي",
            "طعام",
            "عيد",
            "صديق",
            "السوق",
            "دبي",
        ],
        no_spaces: false,
        subjects: &["العائلة", "أصدقاء الجامعة", "فريق العمل"],
        documents: &["فاتورة.pdf"],
        weight: 8,
    },
    Lang {
        prefix: "8190",
        first: &[
            "花子",
            "太郎",
            "陽翔",
            "さくら",
            "健太",
            "美咲",
            "翔太",
            "結衣",
        ],
        last: &[
            "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村",
        ],
        family_first: Some(" "),
        phrases: &[
            "おはようございます！",
            "今日は遅れます、すみません",
            "ありがとうございます",
            "お誕生日おめでとう！🎂",
            "明日の会議は何時ですか？",
            "駅で待っています",
            "写真を送ってください",
            "週末は何をしますか？",
            "東京は雨です☔",
            "了解です！",
        ],
        words: &[
            "今日",
            "明日",
            "会議",
            "電車",
            "駅",
            "写真",
            "週末",
            "東京",
            "大阪",
            "天気",
            "雨",
            "仕事",
            "家族",
            "子供",
            "学校",
            "旅行",
            "映画",
            "音楽",
            "ラーメン",
            "寿司",
            "コーヒー",
            "買い物",
            "誕生日",
            "友達",
            "時間",
            "予定",
            "資料",
            "連絡",
            "確認",
            "新幹線",
        ],
        no_spaces: true,
        subjects: &["プロジェクト連絡", "家族", "大学の友達"],
        documents: &["会議資料.pdf"],
        weight: 6,
    },
    Lang {
        prefix: "86138",
        first: &["伟", "芳", "娜", "敏", "静", "磊", "洋", "婷"],
        last: &["王", "李", "张", "刘", "陈", "杨", "黄", "赵"],
        family_first: Some(""),
        phrases: &[
            "你好！最近怎么样？",
            "谢谢你的帮助",
            "我晚点到，不好意思",
            "生日快乐！🎂",
            "明天见",
            "我们在哪里见面？",
            "今天天气很好",
            "周末一起吃饭吧",
            "收到，谢谢",
            "照片很漂亮",
        ],
        words: &[
            "你好", "谢谢", "明天", "今天", "晚上", "工作", "会议", "火车", "车站", "家人", "孩子",
            "学校", "天气", "下雨", "周末", "旅行", "电影", "音乐", "吃饭", "咖啡", "北京", "上海",
            "朋友", "时间", "照片", "生日", "购物", "地铁", "文件", "确认",
        ],
        no_spaces: true,
        subjects: &["家人群", "同事群", "周末爬山"],
        documents: &["合同.pdf"],
        weight: 6,
    },
];

const EMOJI: &[&str] = &[
    "😂", "❤️", "👍", "🙏", "😊", "🎉", "😍", "🔥", "😅", "👌", "🥳", "😢", "🤔", "👀", "✅", "🌞",
    "🍕", "⚽", "🎂", "💪",
];
const REACTIONS: &[&str] = &["👍", "❤️", "😂", "😮", "😢", "🙏"];

fn pick_lang(rng: &mut Rng) -> u8 {
    let total: u32 = LANGS.iter().map(|l| l.weight).sum();
    let mut roll = rng.below(total as u64) as u32;
    for (i, l) in LANGS.iter().enumerate() {
        if roll < l.weight {
            return i as u8;
        }
        roll -= l.weight;
    }
    0
}

fn lang(i: u8) -> &'static Lang {
    &LANGS[(i as usize) % LANGS.len()]
}

struct Person {
    lang: u8,
    pn: String,
    lid: Option<String>,
    name: Option<String>,
    pushname: Option<String>,
}

impl Person {
    /// The JID the person appears under: the LID when asked for and known.
    fn jid(&self, prefer_lid: bool) -> &str {
        match (&self.lid, prefer_lid) {
            (Some(lid), true) => lid,
            _ => &self.pn,
        }
    }
}

fn make_person(rng: &mut Rng, i: usize, saved: bool) -> Person {
    let lang_no = pick_lang(rng);
    let l = lang(lang_no);
    let first = *rng.pick(l.first);
    let last = *rng.pick(l.last);
    let full = match l.family_first {
        Some(sep) => format!("{last}{sep}{first}"),
        None => format!("{first} {last}"),
    };
    let pn = format!("{}{:07}@s.whatsapp.net", l.prefix, i + 1);
    // 15-digit LIDs: a bijection of the index modulo 10^14, so they never collide.
    let lid = rng.chance(0.3).then(|| {
        let n = (i as u64 + 1).wrapping_mul(7_777_777_777) % 100_000_000_000_000;
        format!("{}@lid", 100_000_000_000_000 + n)
    });
    let pushname = if rng.chance(0.8) {
        Some(if rng.chance(0.15) {
            format!("{first} {}", rng.pick(EMOJI))
        } else {
            first.to_string()
        })
    } else {
        None
    };
    Person {
        lang: lang_no,
        pn,
        lid,
        name: saved.then_some(full),
        pushname,
    }
}

/// A chat of the demo store.
struct Chat {
    jid: String,
    lang: u8,
    /// Direct chat: the person. Group: `None`.
    person: Option<usize>,
    /// Group members (indexes into people), and whether they appear under their LIDs.
    members: Vec<usize>,
    lid_addressing: bool,
    /// The id of the newest message (for replies and reactions).
    last: Option<String>,
    /// Messages from others since our last one (the unread rule of `writes`).
    since_mine: u32,
}

fn message_id(i: u64, from_me: bool) -> String {
    let a = mix(i ^ SEED);
    if from_me {
        format!("3EB0{a:016X}")
    } else {
        format!("{a:016X}{:016X}", mix(a))
    }
}

fn body(rng: &mut Rng, l: &Lang) -> String {
    let roll = rng.unit();
    let mut out = String::with_capacity(64);
    if roll < 0.45 {
        out.push_str(rng.pick::<&str>(l.phrases));
    } else if roll < 0.65 {
        out.push_str(rng.pick::<&str>(l.phrases));
        out.push(' ');
        out.push_str(rng.pick::<&str>(l.phrases));
    } else {
        let n = 2 + rng.index(10);
        for k in 0..n {
            if k > 0 && !l.no_spaces {
                out.push(' ');
            }
            out.push_str(l.words[rng.zipf(l.words.len())]);
        }
        if rng.chance(0.06) {
            // A rare term: an order number or a code, as real chats have.
            out.push_str(&format!(" #{}", 1000 + rng.below(900_000)));
        }
    }
    if rng.chance(0.12) {
        out.push(' ');
        out.push_str(rng.pick::<&str>(EMOJI));
    }
    out
}

fn media_ref(rng: &mut Rng, kind: &str, mimetype: &str, filename: Option<String>) -> MediaRef {
    let size = match kind {
        "audio" => 4_000 + rng.below(400_000),
        "document" => 20_000 + rng.below(4_000_000),
        _ => 40_000 + rng.below(2_500_000),
    };
    let path = format!(
        "/v/t62.7118-24/{}_{}_n.enc?ccb=11-4&oh=01_Q5Aa{:016x}&oe={:08X}&_nc_sid=5e03e0",
        10_000_000 + rng.below(90_000_000),
        1_000_000_000_000_000 + rng.below(8_000_000_000_000_000),
        rng.next(),
        rng.next() >> 32
    );
    MediaRef {
        kind: kind.into(),
        mimetype: Some(mimetype.into()),
        filename,
        size,
        url: Some(format!("https://mmg.whatsapp.net{path}&mms3=true")),
        direct_path: Some(path),
        media_key: Some(rng.bytes(32)),
        file_sha256: Some(rng.bytes(32)),
        file_enc_sha256: Some(rng.bytes(32)),
        local_file: None,
        ptt: kind == "audio",
    }
}

type Pending = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// Queues a write job without waiting for it; keeps at most [`IN_FLIGHT`] queued.
fn submit<F>(store: &Store, pending: &mut VecDeque<Pending>, job: F) -> Result<()>
where
    F: Fn(&redb::WriteTransaction) -> Result<()> + Send + 'static,
{
    let s = store.clone();
    let mut fut: Pending = Box::pin(async move { s.write(job).await });
    // One poll hands the job to the writer's queue.
    if let Some(done) = smol::block_on(futures_lite::future::poll_once(&mut fut)) {
        done?;
    } else {
        pending.push_back(fut);
    }
    while pending.len() >= IN_FLIGHT {
        if let Some(oldest) = pending.pop_front() {
            smol::block_on(oldest)?;
        }
    }
    Ok(())
}

/// Fills the store with `messages` messages over `chats` chats; returns the report line.
pub fn generate(store: &Store, messages: u64, chats: u64) -> Result<String> {
    if messages == 0 || chats == 0 {
        return Err(StoreError(
            "demo-data needs at least one message and one chat".into(),
        ));
    }
    let started = Instant::now();
    let mut rng = Rng::new(SEED);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let end = now / DAY_MS * DAY_MS;
    let start = end.saturating_sub(365 * DAY_MS);
    let own_pn = format!("{OWN_NUMBER}@s.whatsapp.net");

    // People: one per direct chat, plus others who only meet us in groups.
    let chat_count = chats as usize;
    let group_count = if chat_count >= 2 {
        ((chat_count + 5) / 10).max(1)
    } else {
        0
    };
    let direct_count = chat_count - group_count;
    let extra = group_count * 12 + 10;
    let mut people = Vec::with_capacity(direct_count + extra);
    for i in 0..direct_count + extra {
        let saved = if i < direct_count {
            rng.chance(0.85)
        } else {
            rng.chance(0.6)
        };
        people.push(make_person(&mut rng, i, saved));
    }

    // Chats: direct ones (some under the LID), then groups.
    let mut all: Vec<Chat> = Vec::with_capacity(chat_count);
    for (i, p) in people.iter().enumerate().take(direct_count) {
        all.push(Chat {
            jid: p.jid(rng.chance(0.5)).to_string(),
            lang: p.lang,
            person: Some(i),
            members: Vec::new(),
            lid_addressing: false,
            last: None,
            since_mine: 0,
        });
    }
    let mut groups = Vec::with_capacity(group_count);
    for g in 0..group_count {
        let lang_no = pick_lang(&mut rng);
        let l = lang(lang_no);
        let n = g as u64 + 1;
        let jid = format!(
            "120363{:012}@g.us",
            n.wrapping_mul(982_451_653) % 1_000_000_000_000
        );
        let size = 5 + (rng.unit().powi(2) * 76.0) as usize;
        let mut members: Vec<usize> = Vec::with_capacity(size);
        while members.len() < size.min(people.len()) {
            // Friends from direct chats and people met only in groups.
            let m = if rng.chance(0.4) && direct_count > 0 {
                rng.index(direct_count)
            } else {
                direct_count + rng.index(extra)
            };
            if !members.contains(&m) {
                members.push(m);
            }
        }
        let lid_addressing = rng.chance(0.5);
        let base = *rng.pick(l.subjects);
        let subject = if g < l.subjects.len() * 3 {
            base.to_string()
        } else {
            format!("{base} {}", g / 10 + 1)
        };
        let creation = start.saturating_sub(rng.below(3 * 365 * DAY_MS));
        let participants: Vec<(String, String)> = members
            .iter()
            .enumerate()
            .map(|(k, &m)| {
                let role = if k == 0 {
                    "superadmin"
                } else if rng.chance(0.08) {
                    "admin"
                } else {
                    ""
                };
                (people[m].jid(lid_addressing).to_string(), role.to_string())
            })
            .chain(std::iter::once((own_pn.clone(), String::new())))
            .collect();
        let owner = participants.first().map(|(j, _)| j.clone());
        groups.push(GroupUpdate {
            jid: jid.clone(),
            subject: Some(subject),
            owner: owner.clone(),
            subject_owner: owner,
            subject_time: Some(creation + rng.below(DAY_MS * 30)),
            desc: rng
                .chance(0.4)
                .then(|| format!("{} {}", rng.pick(l.phrases), rng.pick(EMOJI))),
            creation: Some(creation),
            announce: Some(rng.chance(0.05)),
            restrict: Some(rng.chance(0.2)),
            participants: Some(participants),
        });
        all.push(Chat {
            jid,
            lang: lang_no,
            person: None,
            members,
            lid_addressing,
            last: None,
            since_mine: 0,
        });
    }
    // Zipf activity over a shuffled order, so groups and direct chats mix among the busy ones.
    let mut order: Vec<usize> = (0..all.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.index(i + 1);
        order.swap(i, j);
    }

    // Setup job: own JID, mappings, contacts, groups, chat names.
    let mut contacts = Vec::with_capacity(people.len());
    let mut mappings = Vec::new();
    for p in &people {
        contacts.push(ContactUpdate {
            jid: p.pn.clone(),
            name: p.name.clone(),
            pushname: p.pushname.clone(),
            number: None,
            is_my_contact: Some(p.name.is_some()),
        });
        if let Some(lid) = &p.lid {
            mappings.push((lid.clone(), p.pn.clone()));
        }
    }
    let names: Vec<ChatUpdate> = all
        .iter()
        .filter_map(|c| {
            let p = &people[c.person?];
            Some(ChatUpdate {
                jid: c.jid.clone(),
                name: p.name.clone(),
                ..ChatUpdate::default()
            })
        })
        .collect();
    let contact_total = contacts.len();
    let setup_own = own_pn.clone();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    submit(store, &mut pending, move |txn| {
        writes::set_own_jid(txn, &setup_own)?;
        for (lid, pn) in &mappings {
            writes::put_mapping(txn, lid, pn)?;
        }
        for c in &contacts {
            writes::upsert_contact(txn, c)?;
        }
        for g in &groups {
            writes::upsert_group(txn, g)?;
        }
        for n in &names {
            writes::update_chat(txn, n)?;
        }
        Ok(())
    })?;

    // Messages, in time order over the year, a batch per job.
    let span = end - start;
    let mut batch: Vec<NewMessage> = Vec::with_capacity(BATCH);
    let mut reactions: Vec<(String, String, String, String)> = Vec::new();
    let mut current = order.first().copied().unwrap_or(0);
    for i in 0..messages {
        if !rng.chance(0.55) {
            current = order[rng.zipf(order.len())];
        }
        let ts = start + (i as u128 * span as u128 / messages as u128) as u64 + rng.below(60_000);
        let chat = &mut all[current];
        let l = lang(if rng.chance(0.15) {
            pick_lang(&mut rng)
        } else {
            chat.lang
        });
        let is_group = chat.person.is_none();
        let from_me = rng.chance(if is_group { 0.12 } else { 0.4 });
        let (sender, push_name) = if from_me {
            (own_pn.clone(), None)
        } else if let Some(p) = chat.person {
            (chat.jid.clone(), people[p].pushname.clone())
        } else {
            let m = &people[*rng.pick(&chat.members)];
            (m.jid(chat.lid_addressing).to_string(), m.pushname.clone())
        };
        let mut m = NewMessage {
            chat_jid: chat.jid.clone(),
            id: message_id(i, from_me),
            sender,
            from_me,
            timestamp_ms: ts,
            body: String::new(),
            kind: "conversation".into(),
            has_media: false,
            quoted_id: None,
            push_name,
            media: None,
        };
        let roll = rng.unit();
        if roll < 0.05 {
            m.kind = "imageMessage".into();
            if rng.chance(0.6) {
                m.body = body(&mut rng, l);
            }
            m.media = Some(media_ref(&mut rng, "image", "image/jpeg", None));
        } else if roll < 0.07 {
            m.kind = "audioMessage".into();
            m.media = Some(media_ref(&mut rng, "audio", "audio/ogg; codecs=opus", None));
        } else if roll < 0.08 {
            m.kind = "documentMessage".into();
            let name = rng.pick(l.documents).to_string();
            let mime = if name.ends_with(".pdf") {
                "application/pdf"
            } else {
                "application/octet-stream"
            };
            m.media = Some(media_ref(&mut rng, "document", mime, Some(name)));
        } else {
            m.body = body(&mut rng, l);
        }
        m.has_media = m.media.is_some();
        if let Some(prev_id) = &chat.last {
            if rng.chance(0.05) {
                m.quoted_id = Some(prev_id.clone());
                if m.kind == "conversation" {
                    m.kind = "extendedTextMessage".into();
                }
            }
            if rng.chance(0.03) {
                // Someone reacts to the previous message of this chat.
                let reactor = match chat.person {
                    Some(_) => chat.jid.clone(),
                    None => people[*rng.pick(&chat.members)]
                        .jid(chat.lid_addressing)
                        .to_string(),
                };
                reactions.push((
                    chat.jid.clone(),
                    prev_id.clone(),
                    reactor,
                    rng.pick(REACTIONS).to_string(),
                ));
            }
        }
        chat.last = Some(m.id.clone());
        if from_me {
            chat.since_mine = 0;
        } else {
            chat.since_mine = chat.since_mine.saturating_add(1);
        }
        batch.push(m);
        if batch.len() >= BATCH {
            let msgs = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
            let reacts = std::mem::take(&mut reactions);
            submit(store, &mut pending, move |txn| {
                write_batch(txn, &msgs, &reacts)
            })?;
        }
    }
    if !batch.is_empty() {
        submit(store, &mut pending, move |txn| {
            write_batch(txn, &batch, &reactions)
        })?;
    }

    // Last: unread counts, archived, pinned and muted chats.
    let mut finals = Vec::with_capacity(all.len());
    for (rank, &c) in order.iter().enumerate() {
        let chat = &all[c];
        let unread = if rng.chance(0.7) {
            0
        } else {
            chat.since_mine.min(1 + rng.below(25) as u32)
        };
        finals.push(ChatUpdate {
            jid: chat.jid.clone(),
            unread: Some(unread),
            archived: Some(rank > 20 && rng.chance(0.04)),
            pinned: Some(rank < 3),
            muted_until: Some(if chat.person.is_none() && rng.chance(0.3) {
                end + 365 * DAY_MS
            } else {
                0
            }),
            ..ChatUpdate::default()
        });
    }
    submit(store, &mut pending, move |txn| {
        for f in &finals {
            writes::update_chat(txn, f)?;
        }
        Ok(())
    })?;
    while let Some(p) = pending.pop_front() {
        smol::block_on(p)?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(format!(
        "demo-data: {messages} messages, {chats} chats, {group_count} groups, {contact_total} contacts in {secs:.2} s ({:.0} messages/s)",
        messages as f64 / secs.max(1e-9)
    ))
}

fn write_batch(
    txn: &redb::WriteTransaction,
    msgs: &[NewMessage],
    reactions: &[(String, String, String, String)],
) -> Result<()> {
    writes::put_messages(txn, msgs)?;
    for (chat, id, reactor, emoji) in reactions {
        writes::put_reaction(txn, chat, id, reactor, emoji)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_deterministic_and_spread() {
        let mut a = Rng::new(SEED);
        let mut b = Rng::new(SEED);
        for _ in 0..100 {
            assert_eq!(a.next(), b.next());
        }
        let mut hist = [0u32; 10];
        for _ in 0..10_000 {
            hist[a.zipf(10)] += 1;
            assert!(a.below(7) < 7);
        }
        assert!(hist[0] > hist[9] * 3, "{hist:?}");
        assert_ne!(message_id(1, false), message_id(2, false));
    }

    #[test]
    fn a_small_demo_store_has_what_it_says() {
        let t = super::super::tests::temp_store();
        let report = generate(&t.store, 500, 10).unwrap();
        assert!(
            report.starts_with("demo-data: 500 messages, 10 chats, 1 groups"),
            "{report}"
        );
        let counts = t
            .store
            .read_blocking(super::super::queries::counts)
            .unwrap();
        assert_eq!(counts.messages, 500);
        assert_eq!(counts.chats, 10);
        assert_eq!(counts.groups, 1);
        assert!(counts.media > 0);
    }
}
