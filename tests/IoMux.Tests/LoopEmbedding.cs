using IoMux.Loop;

namespace IoMux.Tests;

/// <summary>The embedding of one IoMux loop in another, as a porter writes it for sd-event (sd_event_get_fd,
/// sd_event_prepare, sd_event_wait, sd_event_dispatch): prepare before the outer wait, and do not let the outer loop
/// sleep when the inner one has work already; after it, wait without blocking and dispatch. Shared by
/// LoopEmbeddingTests and the generic host's test (tests/IoMux.Hosting.Tests links this file).</summary>
internal static class LoopEmbedding
{
    /// <summary>Drives <paramref name="inner"/> from <paramref name="outer"/>'s iterations: an I/O source on the inner
    /// loop's descriptor, whose prepare callback prepares the inner loop, and a oneshot defer for an inner loop that has
    /// work before any wait. Returns the I/O source (dispose it to stop).</summary>
    public static IoSource Embed(EventLoop outer, EventLoop inner)
    {
        bool prepared = false;
        var kick = outer.AddDefer(_ => Step(), state: SourceState.Off);
        var embed = outer.AddIo(inner.Descriptor, Interest.Readable, (_, _) => Step(), description: "embedded loop");
        embed.PrepareCallback = _ =>
        {
            if (inner.Prepare())
                kick.State = SourceState.Oneshot;
            prepared = true;
        };
        embed.DestroyCallback = _ => kick.Dispose();
        return embed;

        void Step()
        {
            if (!prepared)
                return; // both the descriptor and the kick fired in one outer iteration: the first served it
            prepared = false;
            if (inner.Wait(TimeSpan.Zero))
                inner.Dispatch();
        }
    }
}
