using IoMux.Interop;
namespace IoMux.SocketProxy;

/// <summary>One way of a relayed connection: bytes from <see cref="Source"/> to <see cref="Destination"/>
/// through a bounded <see cref="RelayBuffer"/>. Flow control is the buffer: while it holds bytes the
/// destination has not taken, the source is not read (its socket buffer fills and TCP pushes back on the peer).
/// End of stream from the source becomes shutdown(SHUT_WR) on the destination once everything is delivered
/// (<see cref="PassEndOfStream"/>), or the close of both sockets when the other way has ended too.</summary>
/// <remarks><paramref name="total"/> counts the bytes of every connection in this direction as they are written (the
/// proxy's byte metric), one addition per write. <paramref name="bulkBuffer"/>, when given, is asked once for a
/// replacement buffer (a splice pipe) after a fill that filled the first one: a bulk stream moves without copying,
/// while a short exchange (a request, a response) never opens a pipe.</remarks>
internal sealed class Direction(int source, int destination, RelayBuffer buffer, ByteTally total, Func<RelayBuffer?>? bulkBuffer = null) : IDisposable
{
    // Fill/drain rounds per wakeup (at most 16 pipes' worth, 4 MiB), then back to the loop so that one bulk
    // transfer cannot starve the other connections.
    private const int RoundsPerWakeup = 16;

    private RelayBuffer _buffer = buffer;
    private Func<RelayBuffer?>? _bulkBuffer = bulkBuffer;
    private bool _moreLikely, _filledUp, _endOfStreamPassed;

    public int Source { get; } = source;
    public int Destination { get; } = destination;

    /// <summary>Bytes delivered to the destination.</summary>
    public long BytesRelayed { get; private set; }

    /// <summary>The source reached end of stream.</summary>
    public bool SourceEnded { get; private set; }

    /// <summary>The source reached end of stream and every byte before it was delivered: nothing more will be
    /// written to the destination.</summary>
    public bool Finished { get; private set; }

    /// <summary>The loop should watch the source for reading: nothing is buffered and the source is open.</summary>
    public bool WantsRead => !SourceEnded && _buffer.Pending == 0;

    /// <summary>The loop should watch the destination for writing: bytes wait for room.</summary>
    public bool WantsWrite => _buffer.Pending > 0;

    /// <summary>Bytes held in the buffer.</summary>
    public int Pending => _buffer.Pending;

    /// <summary>Moves what can move without blocking. <paramref name="sourceReadable"/> says the poller reported the
    /// source readable (level-triggered, so a short fill needs no EAGAIN probe: more data is reported again).
    /// Returns 0, or the errno that ends the connection (a reset, EPIPE...).</summary>
    public int Pump(bool sourceReadable)
    {
        bool mayRead = sourceReadable;
        for (int round = 0; ; round++)
        {
            while (_buffer.Pending > 0)
            {
                int offered = _buffer.Pending;
                int written = _buffer.Drain(Destination);
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
                Finished = true; // the shutdown waits for PassEndOfStream: a close of both may make it unnecessary
                return 0;
            }
            if (_filledUp && _bulkBuffer is not null)
                SwitchToBulk(); // empty now: no byte can overtake another
            // After a big fill the source probably holds more (a bulk stream): reading on is cheaper than another
            // wait. After a small one (a request, a response) it is probably drained: the level-triggered poller
            // reports it again if not, which saves the EAGAIN a read would return.
            if (round == RoundsPerWakeup || (!mayRead && !_moreLikely))
                return 0;
            int read = _buffer.Fill(Source);
            if (read < 0)
            {
                _moreLikely = false;
                if (read == -Errno.EINTR)
                    continue;
                return read == -Errno.EAGAIN ? 0 : -read;
            }
            if (read == 0)
                SourceEnded = true;
            _moreLikely = read >= _buffer.Capacity / 2;
            _filledUp = read == _buffer.Capacity;
            mayRead = false;
        }
    }

    /// <summary>Passes a finished direction's end of stream on: shutdown(SHUT_WR) of the destination, once. Not
    /// needed when both directions have finished: closing the sockets then sends the same FIN.</summary>
    public void PassEndOfStream()
    {
        if (!Finished || _endOfStreamPassed)
            return;
        _endOfStreamPassed = true;
        // ENOTCONN when the destination is already gone: the pump of the other direction reports that.
        Interop.LibC.shutdown(Destination, Sockets.SHUT_WR);
    }

    private void SwitchToBulk()
    {
        var bulk = _bulkBuffer!();
        _bulkBuffer = null; // asked once: refused (no descriptors to spare) means copying on, which works as well
        if (bulk is null)
            return;
        _buffer.Dispose();
        _buffer = bulk;
    }

    public void Dispose() => _buffer.Dispose();
}

/// <summary>A running byte count shared by the connections of one proxy (one per direction).</summary>
internal sealed class ByteTally
{
    public long Bytes;
}
