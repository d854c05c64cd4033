using System.Diagnostics.Metrics;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using IoMux.Web.Echo;
using IoMux.Web.Http;

namespace IoMux.Benchmarks;

/// <summary>One keep-alive request to the hello responder (one loop thread), or one 64-byte echo, from a
/// blocking client in the same process. MemoryDiagnoser counts every thread's allocations, the server's loop
/// included: the allocation column is the proof of "0 B per request" for the whole round trip.</summary>
[MemoryDiagnoser]
public class WebRoundTrip
{
    private HttpServer _hello = null!;
    private EchoService _echo = null!;
    private Socket _httpClient = null!, _echoClient = null!;
    private readonly byte[] _request = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n"u8.ToArray();
    private readonly byte[] _message = new byte[64];
    private readonly byte[] _buffer = new byte[4096];
    private int _responseLength;
    private MeterListener? _listener;

    /// <summary>With a listener on every IoMux instrument (the request and connection histograms, the loop's lag),
    /// as OpenTelemetry's would be: the allocation column must stay 0 B.</summary>
    [Params(false, true)]
    public bool Measured { get; set; }

    [GlobalSetup]
    public void Start()
    {
        if (Measured)
        {
            _listener = new MeterListener
            {
                InstrumentPublished = (instrument, listener) =>
                {
                    if (instrument.Meter.Name.StartsWith("IoMux.", StringComparison.Ordinal))
                        listener.EnableMeasurementEvents(instrument);
                },
            };
            // Callbacks that keep a sum, as an aggregator would: the measurement's own path is what is measured.
            _listener.SetMeasurementEventCallback<double>((_, value, _, _) => _sum += value);
            _listener.SetMeasurementEventCallback<long>((_, value, _, _) => _sum += value);
            _listener.Start();
        }
        _hello = HttpServer.Hello(new IPEndPoint(IPAddress.Loopback, 0), new HttpServerOptions { ThreadCount = 1 });
        _echo = new EchoService(new IPEndPoint(IPAddress.Loopback, 0), threadCount: 1);
        _httpClient = Connect(_hello.Endpoint);
        _echoClient = Connect(_echo.Endpoint);
        _httpClient.Send(_request);
        Thread.Sleep(100);
        _responseLength = _httpClient.Receive(_buffer); // the head's length never changes (the Date is fixed-width)
    }

    private static Socket Connect(EndPoint endpoint)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        socket.Connect(endpoint);
        return socket;
    }

    /// <summary>One GET, one "Hello, World!" response.</summary>
    [Benchmark]
    public int HelloRequest()
    {
        _httpClient.Send(_request);
        int got = 0;
        while (got < _responseLength)
            got += _httpClient.Receive(_buffer.AsSpan(got));
        return got;
    }

    /// <summary>64 bytes out, 64 bytes back.</summary>
    [Benchmark]
    public int EchoMessage()
    {
        _echoClient.Send(_message);
        int got = 0;
        while (got < _message.Length)
            got += _echoClient.Receive(_buffer.AsSpan(got, _message.Length - got));
        return got;
    }

    /// <summary>Control for the allocation column: the same kind of round trip through a thread that allocates
    /// 256 B per message. If the column shows it, allocations on other threads are counted.</summary>
    [Benchmark]
    public int ControlOtherThreadAllocates()
    {
        _toWorker.Release();
        _fromWorker.Wait();
        return _sink?.Length ?? 0;
    }

    private readonly SemaphoreSlim _toWorker = new(0), _fromWorker = new(0);
    private volatile byte[]? _sink;
    private Thread? _worker;
    private volatile bool _stopWorker;

    [GlobalSetup(Target = nameof(ControlOtherThreadAllocates))]
    public void StartWorker()
    {
        Start();
        _worker = new Thread(() =>
        {
            while (true)
            {
                _toWorker.Wait();
                if (_stopWorker)
                    return;
                _sink = new byte[232]; // 256 B with the array header
                _fromWorker.Release();
            }
        }) { IsBackground = true };
        _worker.Start();
    }

    private double _sum;

    [GlobalCleanup]
    public void Stop()
    {
        _listener?.Dispose();
        _stopWorker = true;
        _toWorker.Release();
        _worker?.Join();
        _httpClient.Dispose();
        _echoClient.Dispose();
        _hello.Dispose();
        _echo.Dispose();
    }
}
