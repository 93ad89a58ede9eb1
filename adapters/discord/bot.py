"""The discord.py client the Discord channel runs: intents, approval and choice buttons, the reject and edit modals.

Handlers here only acknowledge the interaction (within Discord's 3 s) and hand it to the
channel's `Sink`, which enqueues a trigger; nothing waits on the agent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol, cast

import discord
from discord.ext import commands

from core import ApprovalRequest, words

# The digest the card showed rides along (cards from before digests have none): a click on a card of an
# older version of the call is refused by the core.
DIGEST = r"(?::(?P<digest>[0-9a-f]{8,16}))?"
APPROVAL_TEMPLATE = rf"appr:(?P<id>[0-9a-z]{{4,40}}):(?P<decision>approve|reject){DIGEST}"
SNOOZE_TEMPLATE = rf"appr:(?P<id>[0-9a-z]{{4,40}}):snooze{DIGEST}"  # "Not now (30 min)": no decision
EDIT_TEMPLATE = rf"appr:(?P<id>[0-9a-z]{{4,40}}):edit{DIGEST}"  # edit the arguments, then approve
# Approve and give the requester a standing grant, the longest the policy allows (`ApprovalRequest.grant_max`).
GRANT_TEMPLATE = rf"appr:(?P<id>[0-9a-z]{{4,40}}):grant{DIGEST}"
# A question's choices: the ask_human call id (custom_ids are at most 100 characters) and the option's index.
CALL_ID = r"(?P<call>[A-Za-z0-9_-]{1,80})"
CHOICE_TEMPLATE = rf"ask:{CALL_ID}:(?P<n>\d{{1,2}})"
SELECT_TEMPLATE = rf"asksel:{CALL_ID}"
CALL_ID_CHARS = 80
REASON_MODAL = re.compile(rf"^apprr:(?P<id>[0-9a-z]{{4,40}}){DIGEST}$")
REASON_FIELD = "reason"
EDIT_MODAL = re.compile(rf"^appre:(?P<id>[0-9a-z]{{4,40}}){DIGEST}$")  # `adapters.discord.edits.EditModal`
MODAL_TIMEOUT_SECONDS = 600


RATE_LIMIT_WAIT_SECONDS = 30.0  # the shortest wait discord.py accepts; shorter 429s it sleeps out itself


class Sink(Protocol):
    """Where the client's handlers hand their input: the channel's inbound side."""

    async def message(self, message: discord.Message) -> None: ...

    async def request(self, interaction: discord.Interaction[Any], text: str) -> None: ...

    async def decision(
        self,
        interaction: discord.Interaction[Any],
        approval_id: str,
        approve: bool,
        comment: str,
        digest: str = "",
        grant_for: int | None = None,
    ) -> None: ...

    async def answer(self, interaction: discord.Interaction[Any], call_id: str, index: int) -> None: ...

    async def snooze(self, interaction: discord.Interaction[Any], approval_id: str, digest: str = "") -> None: ...

    # These two answer the interaction themselves: with a modal, a refusal, or an acknowledgement.
    async def edit(self, interaction: discord.Interaction[Any], approval_id: str, digest: str = "") -> None: ...

    async def edited(
        self, interaction: discord.Interaction[Any], approval_id: str, digest: str, values: Mapping[str, str]
    ) -> None: ...


class OpsBot(commands.Bot):
    """A `commands.Bot` without the privileged message-content intent unless asked for.

    Mentions, DMs and slash commands arrive with their content without it; plain messages in
    the bot's threads need it.
    """

    def __init__(self, *, message_content: bool = False, guild_ready_timeout: float = 2.0) -> None:
        intents = discord.Intents.default()
        intents.message_content = message_content
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            help_command=None,
            allowed_mentions=discord.AllowedMentions.none(),  # tool output must never ping @everyone
            guild_ready_timeout=guild_ready_timeout,
            # A 429 asking for longer raises RateLimited: delivery waits instead, other threads meanwhile.
            max_ratelimit_timeout=RATE_LIMIT_WAIT_SECONDS,
        )
        self.sink: Sink | None = None
        self.gateway_ready = False
        self.add_dynamic_items(ApprovalButton, GrantButton, SnoozeButton, EditButton, ChoiceButton, ChoiceSelect)

    async def on_connect(self) -> None:  # the session is up (READY); events flow from now on
        self.gateway_ready = True

    async def on_ready(self) -> None:
        self.gateway_ready = True

    async def on_resumed(self) -> None:
        self.gateway_ready = True

    async def on_disconnect(self) -> None:
        self.gateway_ready = False

    async def on_message(self, message: discord.Message) -> None:  # replaces prefix-command processing
        if self.sink is not None:
            await self.sink.message(message)

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        """Reject reasons and edits: read from the raw submission, so any process and any restart can take them."""
        if interaction.type is not discord.InteractionType.modal_submit or not interaction.data:
            return
        custom_id = str(interaction.data.get("custom_id", ""))
        if edit := EDIT_MODAL.match(custom_id):
            values = modal_values(interaction.data)
            await sink_of(interaction).edited(interaction, edit["id"], edit["digest"] or "", values)
            return
        match = REASON_MODAL.match(custom_id)
        if match is None:
            return
        await interaction.response.defer()
        reason = modal_value(interaction.data, REASON_FIELD)
        await sink_of(interaction).decision(interaction, match["id"], False, reason, match["digest"] or "")


def sink_of(interaction: discord.Interaction[Any]) -> Sink:
    client = interaction.client
    if not isinstance(client, OpsBot) or client.sink is None:
        raise RuntimeError("this Discord client has no channel attached; build it with DiscordChannel")
    return client.sink


def modal_value(data: Mapping[str, Any], custom_id: str) -> str:
    """The value of one text input in a modal submission, wherever Discord nested it."""
    if data.get("custom_id") == custom_id and "value" in data:
        return str(data["value"])
    children = [*data.get("components", []), *([data["component"]] if "component" in data else [])]
    for child in children:
        if isinstance(child, Mapping) and (found := modal_value(child, custom_id)):
            return found
    return ""


def modal_values(data: Mapping[str, Any]) -> dict[str, str]:
    """Every text input's value in a modal submission, by custom_id, wherever Discord nested it."""
    found: dict[str, str] = {}
    if "custom_id" in data and "value" in data:
        found[str(data["custom_id"])] = str(data["value"])
    children = [*data.get("components", []), *([data["component"]] if "component" in data else [])]
    for child in children:
        if isinstance(child, Mapping):
            found |= modal_values(child)
    return found


class RejectModal(discord.ui.Modal):
    reason: discord.ui.TextInput[RejectModal] = discord.ui.TextInput(
        label="Why reject it?", style=discord.TextStyle.paragraph, max_length=1000, custom_id=REASON_FIELD
    )

    def __init__(self, approval_id: str, digest: str = "") -> None:
        custom_id = f"apprr:{approval_id}" + (f":{digest}" if digest else "")
        super().__init__(title=f"Reject {approval_id}", custom_id=custom_id, timeout=MODAL_TIMEOUT_SECONDS)


class ApprovalButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=APPROVAL_TEMPLATE):
    """Approve / Reject on an approval card; the custom_id carries only the approval id, the decision and
    the digest the card showed."""

    def __init__(self, approval_id: str, approve: bool, digest: str = "") -> None:
        decision = "approve" if approve else "reject"
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=decision.title(),
            style=discord.ButtonStyle.success if approve else discord.ButtonStyle.danger,
            custom_id=f"appr:{approval_id}:{decision}" + (f":{digest}" if digest else ""),
        )
        super().__init__(button)
        self.approval_id = approval_id
        self.approve = approve
        self.digest = digest

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ApprovalButton:
        return cls(match["id"], match["decision"] == "approve", match["digest"] or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if not self.approve:
            await interaction.response.send_modal(RejectModal(self.approval_id, self.digest))  # the modal answers
            return
        await interaction.response.defer()
        await sink_of(interaction).decision(interaction, self.approval_id, True, "", self.digest)


class GrantButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=GRANT_TEMPLATE):
    """Approve + grant on an approval card: an approval that also gives the requester a standing grant, the
    longest the policy allows (grant_for=0). The label names the card's `grant_max` and is only for show (a
    click rebuilt from its custom_id has none); the core checks the grant again and decides."""

    def __init__(self, approval_id: str, digest: str = "", label: str = "Approve + grant") -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label,
            style=discord.ButtonStyle.success,
            custom_id=f"appr:{approval_id}:grant" + (f":{digest}" if digest else ""),
        )
        super().__init__(button)
        self.approval_id = approval_id
        self.digest = digest

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> GrantButton:
        return cls(match["id"], match["digest"] or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer()
        await sink_of(interaction).decision(interaction, self.approval_id, True, "", self.digest, grant_for=0)


class SnoozeButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=SNOOZE_TEMPLATE):
    """Not now (30 min) on an approval card: the core asks again later; no decision is made."""

    def __init__(self, approval_id: str, digest: str = "") -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label="Not now (30 min)",
            style=discord.ButtonStyle.secondary,
            custom_id=f"appr:{approval_id}:snooze" + (f":{digest}" if digest else ""),
        )
        super().__init__(button)
        self.approval_id = approval_id
        self.digest = digest

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SnoozeButton:
        return cls(match["id"], match["digest"] or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer()
        await sink_of(interaction).snooze(interaction, self.approval_id, self.digest)


class EditButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=EDIT_TEMPLATE):
    """Edit on an approval card: the call's arguments in a modal, to change, then approve."""

    def __init__(self, approval_id: str, digest: str = "") -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label="Edit",
            style=discord.ButtonStyle.secondary,
            custom_id=f"appr:{approval_id}:edit" + (f":{digest}" if digest else ""),
        )
        super().__init__(button)
        self.approval_id = approval_id
        self.digest = digest

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> EditButton:
        return cls(match["id"], match["digest"] or "")

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await sink_of(interaction).edit(interaction, self.approval_id, self.digest)  # the modal answers


def approval_view(request: ApprovalRequest) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(ApprovalButton(request.approval_id, True, request.short))
    view.add_item(ApprovalButton(request.approval_id, False, request.short))
    view.add_item(SnoozeButton(request.approval_id, request.short))
    view.add_item(EditButton(request.approval_id, request.short))
    if request.grant_max > 0:  # 0: this request allows no grant, so nothing to offer
        label = f"Approve + grant {words(request.grant_max)}"
        # The fifth button: still one row (discord.py fills a row with up to 5, then starts the next).
        view.add_item(GrantButton(request.approval_id, request.short, label))
    return view


class ChoiceButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=CHOICE_TEMPLATE):
    """One option of a question; the custom_id carries the question's call id and the option's index."""

    def __init__(self, call_id: str, index: int, label: str = "") -> None:
        button: discord.ui.Button[discord.ui.View] = discord.ui.Button(
            label=label or str(index + 1),
            style=discord.ButtonStyle.primary,
            custom_id=f"ask:{call_id}:{index}",
        )
        super().__init__(button)
        self.call_id = call_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ChoiceButton:
        return cls(match["call"], int(match["n"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer()  # the answer shows as the thread going on
        await sink_of(interaction).answer(interaction, self.call_id, self.index)


class ChoiceSelect(discord.ui.DynamicItem[discord.ui.Select[discord.ui.View]], template=SELECT_TEMPLATE):
    """The options of a question with more of them than a row of buttons holds; values are indexes."""

    def __init__(self, call_id: str, options: list[discord.SelectOption] | None = None) -> None:
        select: discord.ui.Select[discord.ui.View] = discord.ui.Select(
            custom_id=f"asksel:{call_id}",
            placeholder="Choose an answer",
            options=options or [discord.SelectOption(label="…", value="0")],
        )
        super().__init__(select)
        self.call_id = call_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ChoiceSelect:
        return cls(match["call"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        await interaction.response.defer()
        data: Mapping[str, Any] = cast(Mapping[str, Any], interaction.data or {})
        values = list(data.get("values") or [])  # read raw: any process may take the click
        if values and str(values[0]).isdigit():
            await sink_of(interaction).answer(interaction, self.call_id, int(values[0]))
