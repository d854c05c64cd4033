namespace IoMux;

/// <summary>
/// The one place where the kernel's poll-style bits become the contract's <see cref="Readiness"/>.
/// epoll, poll and event ports all speak these bits (with per-OS values); kqueue translates its filters
/// into the same booleans first. The rules are spelled out in docs/SEMANTICS.md.
/// </summary>
internal static class ReadinessRules
{
    /// <summary>Normalises one descriptor's kernel report.</summary>
    /// <param name="interest">What the registration asked for; directions it did not ask for are not reported.</param>
    /// <param name="input">POLLIN: readable.</param>
    /// <param name="output">POLLOUT: writable.</param>
    /// <param name="priority">POLLPRI: urgent data.</param>
    /// <param name="error">POLLERR: an error is pending.</param>
    /// <param name="hangup">POLLHUP.</param>
    /// <param name="readHangup">POLLRDHUP / EPOLLRDHUP / a derived end-of-stream.</param>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static Readiness Normalize(Interest interest, bool input, bool output, bool priority, bool error, bool hangup, bool readHangup)
    {
        if (!(error | hangup | readHangup))
        {
            // The common case, kept branch-light: Interest and Readiness share the values of the three directions.
            var plain = (input ? Readiness.Readable : 0) | (output ? Readiness.Writable : 0) | (priority ? Readiness.Priority : 0);
            return plain & (Readiness)interest;
        }
        // A paused registration (Interest.None) is silent on every backend, also for errors and hangups that
        // epoll and poll report whatever was asked.
        if ((interest & (Interest.Readable | Interest.Writable | Interest.Priority)) == 0)
            return Readiness.None;
        bool wantsRead = (interest & Interest.Readable) != 0;
        bool wantsWrite = (interest & Interest.Writable) != 0;
        var r = Readiness.None;
        if (input && wantsRead) r |= Readiness.Readable;
        if (output && wantsWrite) r |= Readiness.Writable;
        if (priority && (interest & Interest.Priority) != 0) r |= Readiness.Priority;

        // Linux reports POLLHUP|POLLOUT for a TCP socket that was never connected (state TCP_CLOSE). That is
        // not a peer hangup (contract: no false positives). A real hangup on a socket always comes with
        // RDHUP (read side shut) or ERR (reset); a pipe's or tty's hangup never comes with OUT.
        if (hangup && output && !readHangup && !error)
            hangup = false;

        if (error)
        {
            // The error is left pending for the consumer's next read or write, which returns it: make sure
            // the consumer is told to do one in whichever direction it watches.
            r |= Readiness.Error;
            if (wantsRead) r |= Readiness.Readable;
            if (wantsWrite) r |= Readiness.Writable;
        }
        if (hangup)
        {
            // A pipe whose writer closed with nothing buffered reports only POLLHUP: say Readable too, so
            // the reader reads and sees end of stream. A hangup closes the read side as well.
            r |= Readiness.Hangup;
            if (wantsRead) r |= Readiness.Readable | Readiness.ReadHangup;
            if (wantsWrite) r |= Readiness.Writable;
        }
        if (readHangup && wantsRead)
            r |= Readiness.Readable | Readiness.ReadHangup;
        return r;
    }
}
