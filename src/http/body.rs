//! The response body the layers hand back: the inner service's body,
//! untouched, or bytes a layer produced (a rejection, a cached response),
//! or a body a layer began to buffer and then let stream on.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

pin_project_lite::pin_project! {
    /// A response body from a surgeguard layer.
    ///
    /// Streams the inner body as it is, or bytes held in memory (cheap
    /// clones of one `Bytes`), or the first bytes of an inner body followed
    /// by the rest of it. Its errors are the inner body's.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use bytes::Bytes;
    /// use http_body_util::{BodyExt, Full};
    /// use surgeguard::http::GuardedBody;
    ///
    /// let body: GuardedBody<Full<Bytes>> = GuardedBody::full(Bytes::from("cached"));
    /// assert_eq!(body.collect().await.unwrap().to_bytes(), "cached");
    /// # }
    /// ```
    pub struct GuardedBody<B>
    where
        B: Body,
    {
        #[pin]
        form: Form<B>,
    }
}

pin_project_lite::pin_project! {
    #[project = FormProjection]
    enum Form<B>
    where
        B: Body,
    {
        // The inner service's body.
        Inner {
            #[pin]
            body: B,
        },
        // Bytes in memory, then optional trailers.
        Full {
            data: Option<Bytes>,
            trailers: Option<HeaderMap>,
        },
        // Buffered first bytes, then the rest of the inner body.
        Prefixed {
            prefix: Option<Bytes>,
            #[pin]
            rest: B,
        },
        // Buffered first bytes, then the error the inner body failed with.
        Failed {
            prefix: Option<Bytes>,
            error: Option<B::Error>,
        },
    }
}

impl<B: Body> std::fmt::Debug for GuardedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let form = match &self.form {
            Form::Inner { .. } => "Inner",
            Form::Full { .. } => "Full",
            Form::Prefixed { .. } => "Prefixed",
            Form::Failed { .. } => "Failed",
        };
        f.debug_struct("GuardedBody")
            .field("form", &form)
            .finish_non_exhaustive()
    }
}

impl<B: Body> GuardedBody<B> {
    fn of(form: Form<B>) -> Self {
        GuardedBody { form }
    }

    /// A body that streams `body` unchanged.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body_util::Full;
    /// # use surgeguard::http::GuardedBody;
    /// let body = GuardedBody::inner(Full::new(Bytes::from("hi")));
    /// # drop(body);
    /// ```
    pub fn inner(body: B) -> Self {
        Self::of(Form::Inner { body })
    }

    /// A body of `data`, held in memory.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body::Body;
    /// # use http_body_util::Full;
    /// # use surgeguard::http::GuardedBody;
    /// let body: GuardedBody<Full<Bytes>> = GuardedBody::full(Bytes::from("hi"));
    /// assert_eq!(body.size_hint().exact(), Some(2));
    /// ```
    pub fn full(data: Bytes) -> Self {
        Self::full_with_trailers(data, None)
    }

    /// An empty body.
    ///
    /// ```
    /// # use bytes::Bytes;
    /// # use http_body::Body;
    /// # use http_body_util::Full;
    /// # use surgeguard::http::GuardedBody;
    /// let body: GuardedBody<Full<Bytes>> = GuardedBody::empty();
    /// assert!(body.is_end_stream());
    /// ```
    pub fn empty() -> Self {
        Self::full_with_trailers(Bytes::new(), None)
    }

    pub(crate) fn full_with_trailers(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self::of(Form::Full {
            data: (!data.is_empty()).then_some(data),
            trailers,
        })
    }

    pub(crate) fn prefixed(prefix: Bytes, rest: B) -> Self {
        Self::of(Form::Prefixed {
            prefix: (!prefix.is_empty()).then_some(prefix),
            rest,
        })
    }

    pub(crate) fn failed(prefix: Bytes, error: B::Error) -> Self {
        Self::of(Form::Failed {
            prefix: (!prefix.is_empty()).then_some(prefix),
            error: Some(error),
        })
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().form.project() {
            FormProjection::Inner { body } => body.poll_frame(cx),
            FormProjection::Full { data, trailers } => Poll::Ready(
                data.take()
                    .map(Frame::data)
                    .or_else(|| trailers.take().map(Frame::trailers))
                    .map(Ok),
            ),
            FormProjection::Prefixed { prefix, rest } => match prefix.take() {
                Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
                None => rest.poll_frame(cx),
            },
            FormProjection::Failed { prefix, error } => Poll::Ready(
                prefix
                    .take()
                    .map(|first| Ok(Frame::data(first)))
                    .or_else(|| error.take().map(Err)),
            ),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.form {
            Form::Inner { body } => body.is_end_stream(),
            Form::Full { data, trailers } => data.is_none() && trailers.is_none(),
            Form::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            Form::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.form {
            Form::Inner { body } => body.size_hint(),
            Form::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |data| data.len() as u64))
            }
            Form::Prefixed { prefix, rest } => {
                let first = prefix.as_ref().map_or(0, |data| data.len() as u64);
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(first));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(first));
                }
                hint
            }
            Form::Failed { .. } => SizeHint::new(),
        }
    }
}
