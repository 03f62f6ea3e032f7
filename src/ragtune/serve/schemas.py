"""Request bodies of the API, validated by pydantic (a bad field becomes a 400 naming it)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class Lenient(BaseModel):
    # OpenAI clients send fields we do not use (top_p, user, seed...); accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class ChatMessage(Lenient):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] | None = Field(default=None, validate_default=True)

    @field_validator("content")
    @classmethod
    def text_parts_only(cls, value: Any, info: ValidationInfo) -> Any:
        # null is OpenAI's content of an assistant turn that only called tools; any other turn needs text
        if value is None and info.data.get("role", "assistant") != "assistant":
            raise ValueError("content is required (a string or text parts) for a system or user message")
        # Images and audio cannot be answered by a text model: say so rather than drop them silently.
        if isinstance(value, list) and any(p.get("type") != "text" or not isinstance(p.get("text"), str)
                                           for p in value):
            raise ValueError("only text content parts are supported")
        return value

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p["text"] for p in self.content)


class StreamOptions(Lenient):
    include_usage: bool = False


class ChatRequest(Lenient):
    model: str
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    n: int = Field(default=1, ge=1, le=1)  # one choice per request
    # ragtune extensions (send with the openai client as extra_body={"k": 3})
    k: int | None = Field(default=None, ge=1, le=50)
    where: dict[str, Any] | None = None

    def chat(self) -> list[dict[str, str]]:
        # "developer" is OpenAI's newer name for "system"; local chat templates know only "system".
        return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in self.messages]


class EmbeddingRequest(Lenient):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"

    @field_validator("input")
    @classmethod
    def texts_only(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else value
        if not items:
            raise ValueError("give at least one text")
        if not all(isinstance(v, str) for v in items):
            raise ValueError("token arrays are not supported; send text")
        if len(items) > 2048:
            raise ValueError("at most 2048 texts per request")
        if any(not v.strip() for v in items):
            raise ValueError("texts must not be empty")
        return value

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)  # type: ignore[arg-type]


class SearchRequest(Lenient):
    query: str = Field(min_length=1, max_length=4000)
    k: int = Field(default=5, ge=1, le=100)
    where: dict[str, Any] | None = None
