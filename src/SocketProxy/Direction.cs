using IoMux.Interop;
namespace IoMux.SocketProxy;

/// <summary>One way of a relayed connection: bytes from <see cref="Source"/> to <see cref="Destination"/>
/// through a bounded <see cref="RelayBuffer"/>. Flow control is the buffer: while it holds bytes the
/// destination has not taken, the source is not read (its socket buffer fills and TCP pushes back on the peer).
/// End of stream from the source becomes shutdown(SHUT_WR) on the destination once everything is delivered.</summary>
/// <remarks><paramref name="total"/> counts the bytes of every connection in this direction as they are written (the
/// proxy's byte metric), one addition per write.</remarks>
internal sealed class Direction(int source, int destination, RelayBuffer buffer, ByteTally total) : IDisposable
{
    // Fill/drain rounds per wakeup (at most 16 pipes' worth, 4 MiB), then back to the loop so that one bulk
    // transfer cannot starve the other connections.
    private const int RoundsPerWakeup = 16;

    private bool _moreLikely;

    public int Source { get; } = source;
    public int Destination { get; } = destination;

    /// <summary>Bytes delivered to the destination.</summary>
    public long BytesRelayed { get; private set; }

    /// <summary>The source reached end of stream.</summary>
    public bool SourceEnded { get; private set; }

    /// <summary>The end of stream was passed on (the destination's writing side is shut).</summary>
    public bool Finished { get; private set; }

    /// <summary>The loop should watch the source for reading: nothing is buffered and the source is open.</summary>
    public bool WantsRead => !SourceEnded && buffer.Pending == 0;

    /// <summary>The loop should watch the destination for writing: bytes wait for room.</summary>
    public bool WantsWrite => buffer.Pending > 0;

    /// <summary>Bytes held in the buffer.</summary>
    public int Pending => buffer.Pending;

    /// <summary>Moves what can move without blocking. <paramref name="sourceReadable"/> says the poller reported the
    /// source readable (level-triggered, so a short fill needs no EAGAIN probe: more data is reported again).
    /// Returns 0, or the errno that ends the connection (a reset, EPIPE...).</summary>
    public int Pump(bool sourceReadable)
    {
        bool mayRead = sourceReadable;
        for (int round = 0; ; round++)
        {
            while (buffer.Pending > 0)
            {
                int offered = buffer.Pending;
                int written = buffer.Drain(Destination);
                if (written < 0)
                {
                    if (written == -Errno.EINTR)
                        continue;
                    return written == -Errno.EAGAIN ? 0 : -written;
                }
                BytesRelayed += written;
                total.Bytes += written;
                // A short write means the socket buffer is full: the poller says when it has room (level-triggered),
                // so the EAGAIN that another try would return is not worth its system call.
                if (written < offered)
                    return 0;
            }
            if (SourceEnded)
            {
                if (!Finished)
                {
                    Finished = true;
                    // ENOTCONN when the destination is already gone: the pump of the other direction reports that.
                    Interop.LibC.shutdown(Destination, Sockets.SHUT_WR);
                }
                return 0;
            }
            // After a big fill the source probably holds more (a bulk stream): reading on is cheaper than another
            // wait. After a small one (a request, a response) it is probably drained: the level-triggered poller
            // reports it again if not, which saves the EAGAIN a read would return.
            if (round == RoundsPerWakeup || (!mayRead && !_moreLikely))
                return 0;
            int read = buffer.Fill(Source);
            if (read < 0)
            {
                _moreLikely = false;
                if (read == -Errno.EINTR)
                    continue;
                return read == -Errno.EAGAIN ? 0 : -read;
            }
            if (read == 0)
                SourceEnded = true;
            _moreLikely = read >= buffer.Capacity / 2;
            mayRead = false;
        }
    }

    public void Dispose() => buffer.Dispose();
}

/// <summary>A running byte count shared by the connections of one proxy (one per direction).</summary>
internal sealed class ByteTally
{
    public long Bytes;
}
