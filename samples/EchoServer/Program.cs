using System.Net;
using System.Net.Sockets;
using IoMux;
using IoMux.Samples;

int port = args.Length > 0 ? int.Parse(args[0]) : 7007;
using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
listener.Bind(new IPEndPoint(IPAddress.Loopback, port));
listener.Listen(512);
using var poller = PollerFactory.Create();
using var stop = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
Console.WriteLine($"echo on 127.0.0.1:{port} with {poller.Capabilities.Name}; Ctrl+C stops");
EchoServer.Serve(listener, poller, stop.Token);
