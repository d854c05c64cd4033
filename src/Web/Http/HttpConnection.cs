using IoMux.Interop;
using IoMux.Loop;

namespace IoMux.Web.Http;

/// <summary>One HTTP/1.1 connection on a loop: read, parse, respond, keep alive. Level-triggered; it reads only
/// while no response is waiting to be written (a client that does not read its responses stops being read),
/// pipelined requests are answered in order, and one timer per connection enforces the header timeout
/// (slowloris) and the keep-alive idle timeout by a deadline field the request path only assigns.</summary>
internal sealed unsafe class HttpConnection
{
    private readonly HttpWorker _worker;
    private readonly int _fd;
    private readonly IoSource _source;
    private readonly TimerSource _timer;
    private readonly byte[] _in = new byte[HttpRequestParser.MaxHead];
    private readonly byte[] _out = new byte[4096];
    private readonly HttpRequestHead _head = new();
    private int _inLength, _outLength, _outSent;
    private readonly FileSender _sender = new(FileSender.DefaultMethod);
    private int _fileFd = -1;
    private bool _closeAfterResponse, _closed, _awaitingHead, _lingering;

    // Lingering close (nginx's lingering_close): after the last response, shut our side and read and discard
    // what the client still sends for up to this long, so that unread request bytes do not turn the close into
    // a reset that destroys the response in flight (an oversized header answered 431, for one).
    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);
    private long _deadline;

    public HttpConnection(HttpWorker worker, int fd)
    {
        _worker = worker;
        _fd = fd;
        _source = worker.Loop.AddIo(fd, Interest.Readable, (_, readiness) => OnReady(readiness), description: "http connection");
        _deadline = Now + Nanoseconds(worker.Options.KeepAliveTimeout);
        _timer = worker.Loop.AddTimer(worker.Options.KeepAliveTimeout, _ => OnTimer(), accuracy: TimeSpan.FromMilliseconds(250),
            description: "http timeouts");
    }

    private long Now => _worker.Loop.Now(LoopClock.Monotonic);

    private static long Nanoseconds(TimeSpan span) => span.Ticks * 100;

    private bool ResponsePending => _outSent < _outLength || _fileFd >= 0;

    private void OnReady(Readiness readiness)
    {
        if (_lingering)
        {
            Discard();
            return;
        }
        if (ResponsePending && !Flush())
            return;
        if (_closed)
            return;
        if (!ResponsePending)
            ReadAndServe();
    }

    private void ReadAndServe()
    {
        if (_inLength < _in.Length)
        {
            nint n;
            fixed (byte* buffer = &_in[_inLength])
                n = LibC.read(_fd, buffer, (nuint)(_in.Length - _inLength));
            if (n == 0)
            {
                Close();
                return;
            }
            if (n < 0)
            {
                int errno = Errno.Last;
                if (errno != Errno.EAGAIN && errno != Errno.EINTR)
                    Close();
                return;
            }
            _inLength += (int)n;
        }
        Serve();
    }

    /// <summary>Answers every complete request buffered, in order, until one response cannot be written at once.</summary>
    private void Serve()
    {
        while (!_closed && !ResponsePending && _inLength > 0)
        {
            var status = HttpRequestParser.Parse(_in.AsSpan(0, _inLength), _head);
            if (status == ParseStatus.Incomplete)
            {
                if (!_awaitingHead)
                {
                    _awaitingHead = true;
                    _deadline = Now + Nanoseconds(_worker.Options.HeaderTimeout);
                    if (_timer.State == SourceState.Off || _deadline < _timer.Deadline)
                        _timer.SetDeadline(_deadline); // earlier than the armed keep-alive deadline
                }
                break;
            }
            _awaitingHead = false;
            if (status == ParseStatus.Invalid)
            {
                WriteError(_head.ErrorStatus, close: true);
                _inLength = 0;
            }
            else
            {
                _outLength = _outSent = 0;
                _worker.Responder.Respond(this, _head, _in.AsSpan(_head.TargetStart, _head.TargetLength));
                if (!_head.KeepAlive)
                    _closeAfterResponse = true;
                Consume(_head.HeadLength);
            }
            Flush();
        }
        if (!_closed && !ResponsePending)
        {
            if (_closeAfterResponse)
            {
                BeginLingeringClose();
                return;
            }
            if (_inLength == 0)
                _deadline = Now + Nanoseconds(_worker.Options.KeepAliveTimeout);
        }
    }

    private void Consume(int bytes)
    {
        _inLength -= bytes;
        if (_inLength > 0)
            Buffer.BlockCopy(_in, bytes, _in, 0, _inLength); // a pipelined request follows
    }

    /// <summary>Writes the head (and small body) then the file; true when all of it is out.</summary>
    private bool Flush()
    {
        while (_outSent < _outLength)
        {
            nint n;
            // MSG_MORE: the head waits for the file's first bytes instead of leaving in a packet of its own.
            fixed (byte* buffer = &_out[_outSent])
                n = Sockets.send(_fd, buffer, (nuint)(_outLength - _outSent), _fileFd >= 0 && OperatingSystem.IsLinux() ? Sockets.MSG_MORE : 0);
            if (n < 0)
            {
                int errno = Errno.Last;
                if (errno == Errno.EINTR)
                    continue;
                if (errno == Errno.EAGAIN)
                    return WaitForWritable();
                Close();
                return false;
            }
            _outSent += (int)n;
        }
        if (_fileFd >= 0)
        {
            SendStatus status;
            try
            {
                status = _sender.SendTo(_fd);
            }
            catch (Exception e) when (e is PosixException or FileShrankException)
            {
                Close(); // the peer went away, or the file changed under us: the length sent no longer holds
                return false;
            }
            if (status == SendStatus.WouldBlock)
                return WaitForWritable();
            ReleaseFile();
        }
        if (_source.Interest != Interest.Readable)
            _source.SetInterest(Interest.Readable);
        return true;
    }

    private bool WaitForWritable()
    {
        if (_source.Interest != Interest.Writable)
            _source.SetInterest(Interest.Writable);
        return false;
    }

    /// <summary>For responders: the writer over the output buffer (the head must fit in 4 KiB).</summary>
    internal HttpResponseWriter BeginResponse() => new(_out);

    /// <summary>For responders: the response written with <paramref name="writer"/> is complete.</summary>
    internal void Commit(in HttpResponseWriter writer)
    {
        _outLength = writer.Length;
        _outSent = 0;
    }

    /// <summary>For responders: after the head, send <paramref name="length"/> bytes of <paramref name="fd"/> (owned from now on).</summary>
    internal void AttachFile(int fd, long length)
    {
        _fileFd = fd;
        _sender.Reset(fd, 0, length);
    }

    internal ReadOnlySpan<byte> Date => _worker.Date.Current;

    internal void WriteError(int status, bool close)
    {
        var writer = BeginResponse();
        var body = HttpResponseWriter.Reason(status);
        writer.Head(status, body.Length + 1, keepAlive: !close, Date);
        if (status == 405)
            writer.Header("Allow"u8, "GET, HEAD"u8);
        writer.Header("Content-Type"u8, "text/plain"u8);
        writer.End(body);
        _out[writer.Length] = (byte)'\n';
        _outLength = writer.Length + 1;
        _outSent = 0;
        if (close)
            _closeAfterResponse = true;
    }

    private void BeginLingeringClose()
    {
        _lingering = true;
        LibC.shutdown(_fd, Sockets.SHUT_WR);
        _deadline = Now + Nanoseconds(LingerTime);
        _timer.SetDeadline(_deadline);
        Discard();
    }

    private void Discard()
    {
        byte* scratch = stackalloc byte[4096];
        nint n = LibC.read(_fd, scratch, 4096);
        if (n == 0 || n < 0 && Errno.Last is var errno && errno != Errno.EAGAIN && errno != Errno.EINTR)
            Close();
    }

    private void OnTimer()
    {
        if (_closed)
            return;
        if (Now < _deadline)
        {
            _timer.SetDeadline(_deadline);
            return;
        }
        if (_awaitingHead && !ResponsePending)
        {
            WriteError(408, close: true); // slowloris: the head did not arrive within the header timeout
            Flush();
        }
        Close();
    }

    private void ReleaseFile()
    {
        LibC.CloseQuietly(_fileFd);
        _fileFd = -1;
    }

    public void Close()
    {
        if (_closed)
            return;
        _closed = true;
        ReleaseFile();
        _sender.Dispose();
        _timer.Dispose();
        _source.Dispose();
        LibC.CloseQuietly(_fd);
        _worker.OnClosed(this);
    }
}
