using System.Buffers;
using System.Diagnostics;
using System.Text;
using IoMux.Interop;
using IoMux.Loop;
using Microsoft.Extensions.Logging;
using Microsoft.Win32.SafeHandles;

namespace IoMux.Web.Http;

/// <summary>One HTTP/1.1 connection on a loop: read, parse, respond, keep alive. Level-triggered; it reads only
/// while no response is waiting to be written (a client that does not read its responses stops being read),
/// pipelined requests are answered in order, and nothing is read for an answer after a response that closes the
/// connection (RFC 9112 §9.6). One timer per connection enforces a deadline field the request path only assigns:
/// the header timeout from the first byte of a connection or of a head (slowloris), the send timeout between two
/// writes that make progress (a response in flight is never cut while it moves), the keep-alive idle timeout
/// between requests, and the lingering close.</summary>
/// <remarks>A response is a head in <c>_out</c> followed by at most one body part: a rented copy of bytes, a file
/// range (sendfile), or a source that refills <c>_out</c> each time the previous piece is in the socket. So every
/// body is written under back-pressure: nothing is produced while the socket is full, and at most one buffer of it
/// is held.</remarks>
internal sealed unsafe class HttpConnection
{
    private const int OutSize = 4096;

    private readonly HttpWorker _worker;
    private readonly int _fd;
    private readonly IoSource _source;
    private readonly TimerSource _timer;
    private readonly byte[] _headBuffer; // MaxHead bytes: heads (and pipelined requests) always fit
    private byte[] _in; // _headBuffer, or a rented buffer while a request's content is larger
    private readonly byte[] _out = new byte[OutSize];
    private readonly HttpRequestHead _head = new();
    private int _inLength, _outLength, _outSent;
    private byte[] _sending; // _out, or the rented body after the head
    private readonly FileSender _sender = new(FileSender.DefaultMethod);
    private int _fileFd = -1;
    private SafeFileHandle? _fileHandle; // a handler's file: released (and disposed unless left open) when sent
    private bool _fileLeaveOpen;
    private byte[]? _rentedBody;
    private int _rentedLength;
    private HttpBodySource? _bodySource;
    private IDisposable? _bodyOwner;
    private long _bodyRemaining; // bytes the source still owes, or -1: unknown length (chunked, or until close)
    private bool _chunked;
    private bool _closeAfterResponse, _closed, _awaitingHead, _lingering, _continueSent;
    private int _bodyLength;
    private RequestView? _request;
    private ResponseBuilder? _response;

    // Access log (only with HttpServerOptions.AccessLog): what the line says, captured when the request is answered.
    private string? _logMethod, _logTarget;
    private long _logStarted, _logBytes;
    private int _logStatus;

    private ConnectionMeasure _measure; // the IoMux.Web histograms' state (WebMetrics)

    // Lingering close (nginx's lingering_close): after the last response, shut our side and read and discard
    // what the client still sends for up to this long, so that unread request bytes do not turn the close into
    // a reset that destroys the response in flight (an oversized header answered 431, for one).
    private static readonly TimeSpan LingerTime = TimeSpan.FromSeconds(1);
    private TimeSpan _deadline;

    // The head scanner. The parser starts from the first byte each time, so it runs only when a line that can
    // change its answer has ended (the request line: early 400/414/505; the blank line ending the head), when a
    // limit is reached, or when announced content is all in; never once per read, so a head trickled a byte a
    // time costs O(n) scanning, not O(n²) parsing.
    private int _scanned;     // bytes of _in already scanned for line ends
    private int _lineStart;   // where the line being scanned starts
    private bool _sawRequestLine;
    private int _needed;      // a head whose content is still arriving: the bytes it needs buffered, else 0

    public HttpConnection(HttpWorker worker, int fd)
    {
        _worker = worker;
        _fd = fd;
        _sending = _out;
        _measure.Accepted();
        _in = _headBuffer = new byte[HttpRequestParser.MaxHead];
        _source = worker.Loop.AddIo(fd, Interest.Readable, (_, readiness) => OnReady(readiness), description: "http connection");
        // The first byte is due within the header timeout, as nginx's client_header_timeout: an idle new
        // connection is not held for the (longer) keep-alive timeout.
        _deadline = Now + worker.Options.HeaderTimeout;
        // No description: a described TimerSource makes a side object (152 B armed instead of 64, docs/BENCHMARKS.md
        // "Timers"), per connection; the timer then describes itself as "TimerSource".
        _timer = worker.Loop.AddTimer(worker.Options.HeaderTimeout, _ => OnTimer(), accuracy: TimeSpan.FromMilliseconds(250));
    }

    private TimeSpan Now => _worker.Loop.Now(LoopClock.Monotonic);

    private bool ResponsePending => _outSent < _outLength || _fileFd >= 0 || _rentedBody is not null || _bodySource is not null;

    private void OnReady(Readiness readiness)
    {
        if (_lingering)
        {
            Discard();
            return;
        }
        if (ResponsePending)
        {
            if (!Flush())
                return; // still waiting for room, or closed
            AfterResponse(); // a response that needed more than one write ends here, not in Serve
            if (_closed || _lingering)
                return;
        }
        ReadAndServe();
    }

    /// <summary>The last response is all in the socket: close if it said so, else the connection is idle (or a
    /// pipelined request waits in the buffer, served by the caller).</summary>
    private void AfterResponse()
    {
        if (_closeAfterResponse)
        {
            BeginLingeringClose();
            return;
        }
        if (_inLength == 0)
        {
            _awaitingHead = false;
            SetDeadline(Now + _worker.Options.KeepAliveTimeout);
        }
    }

    /// <summary>Sets the connection's deadline; the timer is moved only when it would fire too late (a later
    /// deadline is picked up when the timer fires early, so extending one costs no timer operation).</summary>
    private void SetDeadline(TimeSpan deadline)
    {
        _deadline = deadline;
        if (_timer.State == SourceState.Off || deadline < _timer.Deadline)
            _timer.SetDeadline(deadline);
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
                {
                    _measure.Ending(ConnectionEndReasons.ConnectionReset);
                    Close();
                    return;
                }
                // Nothing new, but a pipelined request may wait in the buffer behind a response that has just
                // finished (it could not be served while that response was pending): serve it now, or it would
                // wait for the client's next bytes.
                if (_inLength == 0)
                    return;
            }
            else
            {
                _inLength += (int)n;
            }
        }
        Serve();
    }

    /// <summary>Answers every complete request buffered, in order, until one response cannot be written at once.</summary>
    private void Serve()
    {
        // RFC 9112 §9.6: after a response that closes the connection, no further request is processed (a request
        // pipelined behind "Connection: close" is dropped with the connection, never answered).
        while (!_closed && !ResponsePending && !_closeAfterResponse && _inLength > 0)
        {
            if (!WorthParsing())
            {
                StartHeaderClock();
                break;
            }
            var status = HttpRequestParser.Parse(_in.AsSpan(0, _inLength), _head);
            _worker.HeadParses++;
            _bodyLength = 0;
            if (status == ParseStatus.Invalid && _head.ErrorStatus == 413)
            {
                status = AdmitBody();
                if (_closed)
                    return; // the interim 100 could not be sent whole
            }
            if (status == ParseStatus.Incomplete)
            {
                StartHeaderClock();
                break;
            }
            _awaitingHead = false;
            _measure.RequestStarted(_head, _in.AsSpan(0, _inLength));
            if (status == ParseStatus.Invalid)
            {
                _measure.Ending(ConnectionEndReasons.ForStatus(_head.ErrorStatus));
                if (_worker.AccessLog is not null)
                    BeginLog(parsed: _head.HeadLength > 0);
                WriteError(_head.ErrorStatus, close: true);
                _inLength = 0;
                ResetScanner();
            }
            else
            {
                _outLength = _outSent = 0;
                if (_worker.AccessLog is not null)
                    BeginLog(parsed: true);
                // Before the responder runs, so that every answer to a request that closes says so (a 404 too).
                if (!_head.KeepAlive)
                    _closeAfterResponse = true;
                _worker.Responder.Respond(this, _head, _in.AsSpan(_head.TargetStart, _head.TargetLength));
                Consume(_head.HeadLength + _bodyLength);
            }
            Flush();
        }
        if (!_closed && !ResponsePending)
            AfterResponse();
    }

    /// <summary>Bytes of a head are buffered and it is not complete: the header timeout runs from its first byte.</summary>
    private void StartHeaderClock()
    {
        if (_awaitingHead)
            return;
        _awaitingHead = true;
        SetDeadline(Now + _worker.Options.HeaderTimeout);
    }

    /// <summary>Whether parsing the buffer now could give a different answer than last time (see the scanner's
    /// fields): scans the bytes that arrived since, from line end to line end.</summary>
    private bool WorthParsing()
    {
        if (_needed > 0)
            return _inLength >= _needed;
        var data = _in.AsSpan(0, _inLength);
        int at = _scanned;
        while (at < data.Length) // bounded: each pass moves past a line end, or leaves
        {
            int newline = data[at..].IndexOf((byte)'\n');
            if (newline < 0)
                break;
            int end = at + newline;
            bool blank = end == _lineStart || end == _lineStart + 1 && data[_lineStart] == '\r';
            at = end + 1;
            _lineStart = at;
            if (blank ? _sawRequestLine : !_sawRequestLine)
            {
                _sawRequestLine = true;
                _scanned = at;
                return true; // the request line ended (checked early), or the blank line that ends the head
            }
        }
        _scanned = data.Length;
        // The limits the parser enforces without a line end: 414/400 for a request line (or empty lines before
        // it) that reached MaxRequestLine, 431 for a head that filled the buffer.
        return !_sawRequestLine ? _lineStart >= HttpRequestParser.MaxRequestLine || data.Length - _lineStart >= HttpRequestParser.MaxRequestLine
            : data.Length >= HttpRequestParser.MaxHead;
    }

    private void ResetScanner()
    {
        _scanned = _lineStart = _needed = 0;
        _sawRequestLine = false;
    }

    /// <summary>The head is complete and announces content. RFC 9110 §15.5.6: a method the resource does not support
    /// is answered 405 whatever the content (so a POST to a static file is 405, not 413); content the responder
    /// takes (a Content-Length within <see cref="HttpServerOptions.MaxRequestBodySize"/>) is waited for and
    /// handed over whole; anything else stays 413 (RFC 9110 §15.5.14), answered with the connection closed,
    /// since the content is not read.</summary>
    private ParseStatus AdmitBody()
    {
        if (!_worker.Responder.Allows(_head.Method))
        {
            _head.ErrorStatus = 405;
            return ParseStatus.Invalid;
        }
        if (_head.HasTransferEncoding || _head.ContentLength > _worker.MaxRequestBody)
            return ParseStatus.Invalid;
        int needed = _head.HeadLength + (int)_head.ContentLength;
        if (_inLength < needed)
        {
            // Room for the content is taken only now, for this request (a connection holds MaxHead bytes, not
            // MaxHead + MaxRequestBodySize), and the head is parsed again only once the content is all in.
            EnsureCapacity(needed);
            _needed = needed;
            if (_head.ExpectsContinue && !_continueSent)
                SendContinue();
            return ParseStatus.Incomplete; // the header timeout covers the content too
        }
        _head.ErrorStatus = 0;
        _bodyLength = (int)_head.ContentLength;
        return ParseStatus.Complete;
    }

    /// <summary>RFC 9110 §10.1.1: the client waits for "100 Continue" before it sends the content it announced
    /// (curl waits a second without it). Sent once per request, straight into the socket, which holds no response
    /// now (requests are read only then): if it does not take the 25 bytes the client sends its content after its
    /// own timeout anyway; a part of them would garble the stream, so that closes the connection.</summary>
    private void SendContinue()
    {
        _continueSent = true;
        ReadOnlySpan<byte> interim = "HTTP/1.1 100 Continue\r\n\r\n"u8;
        nint sent;
        fixed (byte* bytes = interim)
            sent = Sockets.send(_fd, bytes, (nuint)interim.Length, 0);
        if (sent > 0 && sent < interim.Length)
            Close();
    }

    private void Consume(int bytes)
    {
        _continueSent = false;
        _inLength -= bytes;
        ResetScanner();
        if (_in != _headBuffer && _inLength <= _headBuffer.Length)
        {
            // The content is answered: back to the connection's own buffer (a pipelined request, if any, with it).
            Buffer.BlockCopy(_in, bytes, _headBuffer, 0, _inLength);
            ArrayPool<byte>.Shared.Return(_in);
            _in = _headBuffer;
            return;
        }
        if (_inLength > 0)
            Buffer.BlockCopy(_in, bytes, _in, 0, _inLength); // a pipelined request follows
    }

    /// <summary>Makes the input buffer hold at least <paramref name="bytes"/> (a rented one past MaxHead).</summary>
    private void EnsureCapacity(int bytes)
    {
        if (bytes <= _in.Length)
            return;
        var larger = ArrayPool<byte>.Shared.Rent(bytes);
        Buffer.BlockCopy(_in, 0, larger, 0, _inLength);
        if (_in != _headBuffer)
            ArrayPool<byte>.Shared.Return(_in);
        _in = larger;
    }

    /// <summary>Writes the head (and small body), then the body part; true when all of it is out.</summary>
    private bool Flush()
    {
        while (true)
        {
            while (_outSent < _outLength)
            {
                nint n;
                // MSG_MORE: the head waits for the body's first bytes instead of leaving in a packet of its own.
                bool more = OperatingSystem.IsLinux() && _sending == _out && (_fileFd >= 0 || _rentedBody is not null);
                fixed (byte* buffer = &_sending[_outSent])
                    n = Sockets.send(_fd, buffer, (nuint)(_outLength - _outSent), more ? Sockets.MSG_MORE : 0);
                if (n < 0)
                {
                    int errno = Errno.Last;
                    if (errno == Errno.EINTR)
                        continue;
                    if (errno == Errno.EAGAIN)
                        return WaitForWritable();
                    _measure.Ending(ConnectionEndReasons.ConnectionReset);
                    Close();
                    return false;
                }
                _outSent += (int)n;
                _logBytes += n;
            }
            if (_rentedBody is not null)
            {
                if (_sending == _out)
                {
                    (_sending, _outLength, _outSent) = (_rentedBody, _rentedLength, 0);
                    continue;
                }
                ReleaseRentedBody();
            }
            if (_bodySource is null || !RefillFromSource())
                break;
        }
        if (_closed)
            return false;
        if (_fileFd >= 0)
        {
            SendStatus status;
            long before = _sender.BytesSent;
            try
            {
                status = _sender.SendTo(_fd);
            }
            catch (Exception e) when (e is PosixException or FileShrankException)
            {
                _measure.Ending(e is FileShrankException ? ConnectionEndReasons.ResponseContentLengthMismatch : ConnectionEndReasons.ConnectionReset);
                Close(); // the peer went away, or the file changed under us: the length sent no longer holds
                return false;
            }
            finally
            {
                _logBytes += _sender.BytesSent - before;
            }
            if (status == SendStatus.WouldBlock)
                return WaitForWritable();
            ReleaseFile();
        }
        if (_logMethod is not null)
            EndLog();
        _measure.ResponseDone();
        if (_source.Interest != Interest.Readable)
            _source.SetInterest(Interest.Readable);
        return true;
    }

    /// <summary>Asks the body source for the next piece into <c>_out</c> (framed as a chunk when chunked); false when
    /// the body is complete (or the connection failed: a source that throws, or ends before its length).</summary>
    private bool RefillFromSource()
    {
        const int ChunkPrefix = 10; // up to 8 hex digits and CRLF fit, and the piece is at most OutSize
        int offset = _chunked ? ChunkPrefix : 0;
        int room = OutSize - offset - (_chunked ? 7 : 0); // the chunk's CRLF, and the last chunk "0\r\n\r\n"
        if (_bodyRemaining >= 0)
            room = (int)Math.Min(room, _bodyRemaining);
        int produced;
        try
        {
            produced = room == 0 ? 0 : _bodySource!(_out.AsSpan(offset, room));
        }
        catch (Exception e)
        {
            _worker.Options.Logger.LogError(e, "An HTTP response body source failed; the connection is closed.");
            _measure.Ending(ConnectionEndReasons.ErrorAfterStartingResponse);
            Close();
            return false;
        }
        if (produced < 0 || produced > room)
        {
            _worker.Options.Logger.LogError("An HTTP response body source returned {Count} for a buffer of {Room} bytes; the connection is closed.", produced, room);
            _measure.Ending(ConnectionEndReasons.ErrorAfterStartingResponse);
            Close();
            return false;
        }
        if (produced == 0)
        {
            bool complete = _bodyRemaining <= 0;
            ReleaseBodySource();
            if (!complete)
            {
                _measure.Ending(ConnectionEndReasons.ResponseContentLengthMismatch);
                Close(); // fewer bytes than the Content-Length announced: the client can only tell by the close
                return false;
            }
            if (!_chunked)
                return false;
            "0\r\n\r\n"u8.CopyTo(_out); // RFC 9112 §7.1: the last chunk, and no trailer section
            (_sending, _outLength, _outSent) = (_out, 5, 0);
            _chunked = false;
            return true;
        }
        if (_bodyRemaining > 0)
            _bodyRemaining -= produced;
        int start = 0;
        int end = offset + produced;
        if (_chunked)
        {
            // RFC 9112 §7.1: chunk-size in hex, CRLF, the data, CRLF; the size is written right before the data.
            Span<byte> size = stackalloc byte[8];
            System.Buffers.Text.Utf8Formatter.TryFormat(produced, size, out int digits, new System.Buffers.StandardFormat('X'));
            start = offset - 2 - digits;
            size[..digits].CopyTo(_out.AsSpan(start));
            "\r\n"u8.CopyTo(_out.AsSpan(offset - 2));
            "\r\n"u8.CopyTo(_out.AsSpan(end));
            end += 2;
        }
        (_sending, _outLength, _outSent) = (_out, end, start);
        return true;
    }

    /// <summary>The socket is full. The send timeout runs from here: this is reached after every write that made
    /// progress and then found the socket full again (a writable report with no room at all does not happen on a
    /// stream socket), so the deadline measures the time between two writes, as nginx's send_timeout.</summary>
    private bool WaitForWritable()
    {
        SetDeadline(Now + _worker.Options.SendTimeout);
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
        Answered(writer.Status);
    }

    /// <summary>For responders: after the head, send <paramref name="length"/> bytes of <paramref name="fd"/> from
    /// <paramref name="offset"/> (the descriptor is owned from now on).</summary>
    internal void AttachFile(int fd, long offset, long length)
    {
        _fileFd = fd;
        _sender.Reset(fd, offset, length);
    }

    /// <summary>For handlers: after the head, a range of a file the handler opened.</summary>
    internal void AttachFile(SafeFileHandle file, long offset, long length, bool leaveOpen)
    {
        bool added = false;
        file.DangerousAddRef(ref added); // released in ReleaseFile: the descriptor stays valid while it is sent
        _fileHandle = file;
        _fileLeaveOpen = leaveOpen;
        AttachFile((int)file.DangerousGetHandle(), offset, length);
    }

    /// <summary>For handlers: after the head, a copy of <paramref name="body"/> (too large for the head's buffer).</summary>
    internal void AttachBody(ReadOnlySpan<byte> body)
    {
        _rentedBody = ArrayPool<byte>.Shared.Rent(body.Length);
        body.CopyTo(_rentedBody);
        _rentedLength = body.Length;
    }

    /// <summary>For handlers: after the head, what <paramref name="source"/> produces, <paramref name="length"/> bytes
    /// (-1: unknown, sent chunked when <paramref name="chunked"/>, else delimited by the close).</summary>
    internal void AttachSource(HttpBodySource source, IDisposable? owner, long length, bool chunked)
    {
        _bodySource = source;
        _bodyOwner = owner;
        _bodyRemaining = length;
        _chunked = chunked;
        if (length < 0 && !chunked)
            _closeAfterResponse = true; // RFC 9112 §6.3 (8): the body ends with the connection
    }

    /// <summary>For responders: the handler threw (recorded as the request's error.type; the connection closes).</summary>
    internal void HandlerFailed(Exception exception)
    {
        _measure.HandlerFailed(exception);
        _measure.Ending(ConnectionEndReasons.AppError);
    }

    /// <summary>The response cannot keep the connection (a handler failed after its head was written).</summary>
    internal void CloseAfterResponse() => _closeAfterResponse = true;

    internal ReadOnlySpan<byte> Date => _worker.Date.Current;

    internal HttpRequestHead Head => _head;

    internal ReadOnlySpan<byte> Input => _in.AsSpan(0, _inLength);

    internal int BodyLength => _bodyLength;

    internal ILogger Logger => _worker.Options.Logger;

    /// <summary>The request and response objects handed to a handler: one pair per connection, reused.</summary>
    internal RequestView Request => _request ??= new RequestView(this);

    internal ResponseBuilder Response => _response ??= new ResponseBuilder(this);

    internal void WriteError(int status, bool close)
    {
        if (close)
            _closeAfterResponse = true;
        var writer = BeginResponse();
        var body = HttpResponseWriter.Reason(status);
        writer.Head(status, body.Length + 1, keepAlive: !_closeAfterResponse, Date);
        if (status == 405)
            writer.Header("Allow"u8, "GET, HEAD"u8);
        writer.Header("Content-Type"u8, "text/plain"u8);
        if (_head.Method == HttpMethodKind.Head)
        {
            writer.End(default); // RFC 9110 §9.3.2: HEAD gets the head of the answer, never its content
            _outLength = writer.Length;
        }
        else
        {
            writer.End(body);
            _out[writer.Length] = (byte)'\n';
            _outLength = writer.Length + 1;
        }
        _outSent = 0;
        Answered(status);
    }

    private void Answered(int status)
    {
        _measure.Answered(status);
        _logStatus = status;
    }

    private void BeginLog(bool parsed)
    {
        var input = _in.AsSpan(0, _inLength);
        _logMethod = parsed ? Encoding.ASCII.GetString(input.Slice(_head.MethodStart, _head.MethodLength)) : "-";
        _logTarget = parsed ? Encoding.ASCII.GetString(input.Slice(_head.TargetStart, _head.TargetLength)) : "-";
        _logStarted = Stopwatch.GetTimestamp();
        _logBytes = 0;
        _logStatus = 0;
    }

    private void EndLog()
    {
        _worker.AccessLog!.LogInformation("{Method} {Target} {Status} {Bytes} {Milliseconds:F3} ms",
            _logMethod, _logTarget, _logStatus, _logBytes, Stopwatch.GetElapsedTime(_logStarted).TotalMilliseconds);
        _logMethod = null;
    }

    private void BeginLingeringClose()
    {
        _lingering = true;
        LibC.shutdown(_fd, Sockets.SHUT_WR);
        _deadline = Now + LingerTime;
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
        // An idle kept-alive connection and the end of a lingering close are ordinary ends (no error.type).
        if (!_lingering && (ResponsePending || _awaitingHead))
            _measure.Ending(ResponsePending ? ConnectionEndReasons.SendTimeout : ConnectionEndReasons.RequestHeadersTimeout);
        if (_awaitingHead && !ResponsePending && !_lingering)
        {
            _measure.UnparsedRequestStarted();
            if (_worker.AccessLog is not null)
                BeginLog(parsed: false);
            WriteError(408, close: true); // slowloris: the head did not arrive within the header timeout
            Flush();
        }
        Close();
    }

    private void ReleaseFile()
    {
        if (_fileHandle is not null)
        {
            _fileHandle.DangerousRelease();
            if (!_fileLeaveOpen)
                _fileHandle.Dispose();
            _fileHandle = null;
        }
        else
        {
            LibC.CloseQuietly(_fileFd);
        }
        _fileFd = -1;
    }

    private void ReleaseRentedBody()
    {
        ArrayPool<byte>.Shared.Return(_rentedBody!);
        _rentedBody = null;
        _sending = _out;
    }

    private void ReleaseBodySource()
    {
        _bodySource = null;
        _bodyOwner?.Dispose();
        _bodyOwner = null;
    }

    public void Close()
    {
        if (_closed)
            return;
        _closed = true;
        if (_logMethod is not null)
            EndLog(); // the response was cut short: the line says how many bytes made it
        _measure.Closed(_worker.Endpoint);
        if (_fileFd >= 0)
            ReleaseFile();
        if (_rentedBody is not null)
            ReleaseRentedBody();
        if (_in != _headBuffer)
        {
            ArrayPool<byte>.Shared.Return(_in);
            _in = _headBuffer;
        }
        ReleaseBodySource();
        _sender.Dispose();
        _timer.Dispose();
        _source.Dispose();
        LibC.CloseQuietly(_fd);
        _worker.OnClosed(this);
    }
}
