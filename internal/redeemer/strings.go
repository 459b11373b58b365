package redeemer

// strings2 holds the page's text per language. Keys not starting with a
// result name are labels; {game} and {n} are filled in. "untitled" is the
// title when no game name is configured.
var strings2 = map[string]map[string]string{
	"en": {
		"title":      "Join the {game} closed beta",
		"untitled":   "Join the closed beta",
		"emailLabel": "Your email",
		"button":     "Get my invitation",
		"sending":    "Sending…",
		"remaining":  "{n} places left on this invitation.",
		"switch":     "English",
		"redeemed":   "You're in! Check your inbox: we've sent you the instructions.",
		"already":    "You have already redeemed this invitation. Check your inbox for the instructions.",
		"elsewhere":  "This email has already been used with another invitation.",
		"full":       "Sorry, every place on this invitation is taken.",
		"expired":    "This invitation has expired.",
		"paused":     "This invitation is paused for now. Please try again later.",
		"revoked":    "This invitation is no longer available.",
		"unknown":    "There is no such invitation. Check the link.",
		"invalid":    "Please enter a valid email address, like name@example.com.",
		"busy":       "We're very busy right now. Trying again in {n} s…",
		"error":      "Something went wrong. Please try again.",
	},
	"ru": {
		"title":      "Закрытый бета-тест {game}",
		"untitled":   "Закрытый бета-тест",
		"emailLabel": "Ваш email",
		"button":     "Получить приглашение",
		"sending":    "Отправляем…",
		"remaining":  "Осталось мест по этому приглашению: {n}.",
		"switch":     "Русский",
		"redeemed":   "Готово! Проверьте почту: мы отправили вам инструкции.",
		"already":    "Вы уже активировали это приглашение. Инструкции — у вас в почте.",
		"elsewhere":  "Этот email уже использован с другим приглашением.",
		"full":       "Увы, все места по этому приглашению заняты.",
		"expired":    "Срок действия приглашения истёк.",
		"paused":     "Приглашение временно приостановлено. Попробуйте позже.",
		"revoked":    "Это приглашение больше недоступно.",
		"unknown":    "Такого приглашения нет. Проверьте ссылку.",
		"invalid":    "Введите корректный email, например name@example.com.",
		"busy":       "Сейчас очень много желающих. Повторим через {n} с…",
		"error":      "Что-то пошло не так. Попробуйте ещё раз.",
	},
}
